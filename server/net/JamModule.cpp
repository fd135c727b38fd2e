// The interval jam module (JamModule.h).
#include "server/net/JamModule.h"

#include <osc/OscReceivedElements.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "server/compat/sooperlooper/SooperLooper.h"
#include "server/engine/BufferData.h"
#include "server/net/JamGuest.h"
#include "server/net/JamHost.h"
#include "server/nodes/looper/Looper.h"

namespace loopd {

namespace {
constexpr const char* kAddr = "/jam";
constexpr const char* kAddrJoin = "/jam_join";

} // namespace

JamModule::JamModule(Controller& c, SooperLooper& sl) : Module(c), sl_(sl) {
    on("/jam_host", &JamModule::hHost);
    on("/jam_join", &JamModule::hJoin);
    on("/jam_leave", &JamModule::hLeave);
    on("/jam", &JamModule::hQuery);
}

JamModule::~JamModule() = default;

bool JamModule::pushUnit(uint16_t client, CommandBody&& body) {
    // The control thread's own queue (the worker's queue has one producer: the worker).
    return withMsg(kAddr, client, [&](Msg& m) { return push(m, std::move(body)); });
}

int JamModule::loopIndex() const { return node_ >= 0 ? sl_.indexOfNode(node_) : -1; }

void JamModule::notifyTake(int64_t cycle, const std::string& name, const std::string& status) {
    spdlog::info("jam: cycle {} take of {}: {}", cycle, name.empty() ? "-" : name, status);
    broadcast(osc::MessageBuilder("/jam_take").i(static_cast<int32_t>(cycle)).s(name).s(status));
}

std::unique_ptr<BufferData> JamModule::cycleBuffer(const BufferData* audio) const {
    auto d = BufferData::zeros(session_.loopFrames, 2, engine_.config().sampleRate);
    if (audio && audio->numChannels > 0) {
        const int64_t n = std::min(audio->numFrames, d->numFrames);
        for (int c = 0; c < 2; ++c) std::memcpy(d->channel(c), audio->channel(std::min(c, audio->numChannels - 1)), static_cast<size_t>(n) * sizeof(float));
    }
    return d;
}

void JamModule::hHost(Msg& m) {
    const int32_t port = m.args.int32("port");
    const int32_t bars = m.args.int32("bars");
    m.args.expectEnd();
    if (options_.offline || options_.replay) throw osc::ArgError("an offline render or replay cannot host a jam");
    if (host_ || guest_) throw osc::ArgError("a jam is running here (/jam_leave first)");
    if (port < 0 || port > 65535) throw osc::ArgError("port must be 0..65535 (0: any free one), got " + std::to_string(port));
    if (bars < 1 || bars > 64) throw osc::ArgError("bars must be 1..64, got " + std::to_string(bars));
    const double sr = engine_.config().sampleRate;
    net::JamState s;
    s.bpm = engine_.stats().bpm;
    s.beatsPerBar = engine_.stats().beatsPerBar;
    s.bars = bars;
    s.sampleRate = sr;
    s.loopFrames = net::jamLoopFrames(s.bpm, s.beatsPerBar, bars, sr);
    const double seconds = static_cast<double>(s.loopFrames) / sr;
    if (seconds > 600.0) throw osc::ArgError("a cycle of " + std::to_string(seconds) + " s is too long (600 s at most)");
    net::JamHost::Config cfg;
    cfg.bind = options_.jamBind;
    cfg.port = port;
    cfg.token = options_.jamToken;
    cfg.session = s;
    std::unique_ptr<net::JamHost> host;
    try {
        host = std::make_unique<net::JamHost>(cfg);
    } catch (const std::exception& e) {
        throw osc::ArgError(e.what());
    }
    const int index = sl_.addLoopFor(m, 2, seconds + 1.0);
    if (index < 0) return;
    node_ = sl_.nodeOfIndex(index);
    Looper* looper = sl_.looperOfNode(node_);
    wrapsBase_ = looper ? looper->status().wraps.load(std::memory_order_acquire) : 0;
    mixesSeen_ = looper ? looper->status().mixes.load(std::memory_order_acquire) : 0;
    // The total track starts silent at the next bar: that is cycle 0.
    auto silence = BufferData::zeros(s.loopFrames, 2, sr);
    if (!pushUnit(m.client, Looper::loadAtFor(node_, silence.get(), Looper::LoadAt::Bar))) return;
    silence.release();
    session_ = s;
    cycle_ = -1;
    client_ = m.client;
    mixPushed_ = false;
    waiting_.clear();
    host_ = std::move(host);
    spdlog::info("jam: hosting on {}:{}, {} bar(s) of {} beats at {} BPM = {} frames, loop {}", cfg.bind, host_->port(), bars,
                 s.beatsPerBar, s.bpm, s.loopFrames, index);
    done(m.client, "/jam_host", {host_->port(), index});
}

void JamModule::hJoin(Msg& m) {
    const std::string url = m.args.string("producer url (http://host:port)");
    const std::string name = m.args.string("musician name");
    m.args.expectEnd();
    if (options_.offline || options_.replay) throw osc::ArgError("an offline render or replay cannot join a jam");
    if (host_ || guest_) throw osc::ArgError("a jam is running here (/jam_leave first)");
    if (url.rfind("http://", 0) != 0 || url.size() <= 7) throw osc::ArgError("the producer's url must be http://host:port, got '" + url + "'");
    if (!net::validJamName(name)) throw osc::ArgError("a musician's name is 1 to 32 letters, digits, '_', '-' or '.'");
    net::JamGuest::Config cfg;
    cfg.url = url;
    cfg.name = name;
    cfg.token = options_.jamToken;
    guest_ = std::make_unique<net::JamGuest>(cfg);
    name_ = name;
    client_ = m.client;
    joined_ = false;
    firstMix_ = true;
    takeCycle_ = -1;
    node_ = -1;
    spdlog::info("jam: joining {} as {}", url, name);
    // /done when the first state came and the loop exists (pollGuest).
}

void JamModule::hLeave(Msg& m) {
    m.args.expectEnd();
    if (!host_ && !guest_) throw osc::ArgError("no jam is running here");
    stop();
    done(m.client, m.address);
}

void JamModule::hQuery(Msg& m) {
    m.args.expectEnd();
    const char* role = host_ ? "host" : guest_ ? "guest" : "off";
    const uint64_t in = host_ ? host_->bytesIn() : guest_ ? guest_->bytesIn() : 0;
    const uint64_t out = host_ ? host_->bytesOut() : guest_ ? guest_->bytesOut() : 0;
    send(m.client, osc::MessageBuilder("/jam.reply").s(role).i(static_cast<int32_t>(session_.cycle)).s(session_.turn)
                       .i(loopIndex()).i(static_cast<int32_t>(in / 1024)).i(static_cast<int32_t>(out / 1024)));
}

void JamModule::stop() {
    if (host_) spdlog::info("jam: hosting stopped");
    if (guest_) spdlog::info("jam: left");
    host_.reset(); // stops the HTTP server (its handlers finish first)
    if (guest_) {
        // A request in flight may take its timeout: the thread is joined on the worker.
        std::shared_ptr<net::JamGuest> g(std::move(guest_));
        worker_.post([g]() mutable { g.reset(); });
    }
    waiting_.clear();
    joined_ = false;
}

void JamModule::poll() {
    if (host_) pollHost();
    if (guest_) pollGuest();
}

void JamModule::pollHost() {
    Looper* looper = sl_.looperOfNode(node_);
    if (!looper) {
        notifyTake(cycle_, "", "stopped: the jam's loop was deleted");
        stop();
        return;
    }
    LooperStatus& st = looper->status();
    // A take mixed in (at the start of the cycle the mix copy began).
    const int64_t mixes = st.mixes.load(std::memory_order_acquire);
    if (mixes != mixesSeen_) {
        mixesSeen_ = mixes;
        mixPushed_ = false;
        char timing[96];
        std::snprintf(timing, sizeof timing, " (came in cycle %lld, %.3f s before its end)", static_cast<long long>(mixedCameIn_), mixedBefore_);
        notifyTake(mixedCycle_, mixedBy_, "mixed at cycle " + std::to_string(st.mixWrap.load(std::memory_order_relaxed) - wrapsBase_ - 1) + timing);
    }
    const int64_t cycle = st.wraps.load(std::memory_order_acquire) - wrapsBase_ - 1;
    if (cycle > cycle_) {
        while (cycle_ < cycle) {
            ++cycle_;
            const std::string turn = host_->beginCycle(cycle_);
            session_.cycle = cycle_;
            session_.turn = turn;
            broadcast(osc::MessageBuilder("/jam_turn").i(static_cast<int32_t>(cycle_)).s(turn));
        }
        // What the loop holds in this cycle (after a take mixed in at its start: a save waits
        // for the looper's copy), for GET /jam/mix/{cycle}.
        if (!saveLent_) {
            auto d = BufferData::zeros(session_.loopFrames, 2, engine_.config().sampleRate);
            saveLent_ = d.get();
            saveCycle_ = cycle_;
            if (pushUnit(kNoClient, Looper::saveFor(node_, d.get()))) d.release();
            else saveLent_ = nullptr;
        }
    }
    const double sr = engine_.config().sampleRate;
    for (auto& t : host_->takeTakes()) {
        // When it came: in which cycle, how long before that cycle's end (the boundary that mixes it).
        const int64_t now = engine_.sampleTime(), next = st.wrapSample.load(std::memory_order_relaxed) + session_.loopFrames;
        waiting_.push_back(Pending{t.cycle, t.musician, std::move(t.audio), cycle_, static_cast<double>(next - now) / sr});
    }
    if (!waiting_.empty() && !mixPushed_ && cycle_ >= 0) {
        Pending p = std::move(waiting_.front());
        waiting_.pop_front();
        auto d = cycleBuffer(p.audio.get());
        if (pushUnit(kNoClient, Looper::mixFor(node_, d.get()))) {
            d.release();
            mixPushed_ = true;
            mixedCycle_ = p.cycle;
            mixedBy_ = p.musician;
            mixedCameIn_ = p.cameIn;
            mixedBefore_ = p.before;
        }
    }
    for (const auto& e : host_->takeEvents()) notifyTake(e.cycle, e.musician, e.status);
}

void JamModule::pollGuest() {
    for (auto& e : guest_->takeEvents()) {
        using Kind = net::JamGuest::Event::Kind;
        if (e.kind == Kind::Problem) {
            notifyTake(e.cycle, name_, e.status);
            if (!joined_ && client_ != kNoClient) {
                fail(client_, kAddrJoin, e.status);
                client_ = kNoClient; // told once; the guest keeps trying
            }
        } else if (e.kind == Kind::State) {
            if (!joined_) {
                const double sr = engine_.config().sampleRate;
                std::string why;
                if (static_cast<int64_t>(e.state.sampleRate) != static_cast<int64_t>(sr))
                    why = "the session runs at " + std::to_string(static_cast<int64_t>(e.state.sampleRate)) + " Hz, this server at " +
                          std::to_string(static_cast<int64_t>(sr)) + " Hz";
                else if (static_cast<double>(e.state.loopFrames) / sr > options_.captureSeconds - 1.0)
                    why = "a cycle is longer than this server's input history (--capture-seconds " + std::to_string(options_.captureSeconds) + ")";
                if (!why.empty()) {
                    if (client_ != kNoClient) fail(client_, kAddrJoin, why);
                    notifyTake(-1, name_, "left: " + why);
                    stop();
                    return;
                }
                session_ = e.state;
                runInternal(osc::MessageBuilder("/set_meter").i(e.state.beatsPerBar));
                runInternal(osc::MessageBuilder("/tempo").f(static_cast<float>(e.state.bpm)));
                const uint16_t client = client_;
                const int index = withMsg(kAddrJoin, client, [&](Msg& m) {
                    try {
                        return sl_.addLoopFor(m, 2, static_cast<double>(e.state.loopFrames) / sr + 1.0);
                    } catch (const osc::ArgError& err) {
                        if (client != kNoClient) fail(client, kAddrJoin, err.what());
                        return -1;
                    }
                });
                if (index < 0) {
                    stop();
                    return;
                }
                node_ = sl_.nodeOfIndex(index);
                joined_ = true;
                if (client_ != kNoClient) done(client_, kAddrJoin, {index});
                spdlog::info("jam: joined as {}: {} BPM, {} frames a cycle, loop {}", name_, e.state.bpm, e.state.loopFrames, index);
            }
            session_.cycle = e.state.cycle;
            session_.turn = e.state.turn;
            session_.musicians = e.state.musicians;
            broadcast(osc::MessageBuilder("/jam_turn").i(static_cast<int32_t>(e.state.cycle)).s(e.state.turn));
            if (e.state.turn == name_ && e.state.cycle != takeCycle_ && e.state.cycle >= 0) {
                takeCycle_ = e.state.cycle;
                Looper* looper = sl_.looperOfNode(node_);
                if (!looper || looper->status().wraps.load(std::memory_order_acquire) == 0) {
                    notifyTake(takeCycle_, name_, "skipped: the mix is not playing here yet");
                } else if (takeLent_) {
                    notifyTake(takeCycle_, name_, "skipped: the last take is still being recorded");
                } else {
                    auto d = BufferData::zeros(session_.loopFrames, 2, engine_.config().sampleRate);
                    takeLent_ = d.get();
                    takeLentCycle_ = takeCycle_;
                    if (pushUnit(kNoClient, Looper::takeFor(node_, d.get(), 0))) d.release();
                    else takeLent_ = nullptr;
                }
            }
        } else if (e.kind == Kind::Mix) {
            if (!joined_) continue;
            // Until the loop plays, at the next bar (a mix that comes while the first waits takes
            // its place and its bar); then at the loop's next wrap.
            Looper* looper = sl_.looperOfNode(node_);
            const bool playing = looper && looper->status().wraps.load(std::memory_order_acquire) > 0;
            auto d = cycleBuffer(e.audio.get());
            if (pushUnit(kNoClient, Looper::loadAtFor(node_, d.get(), firstMix_ || !playing ? Looper::LoadAt::Bar : Looper::LoadAt::Wrap))) {
                d.release();
                firstMix_ = false;
            }
        } else if (e.kind == Kind::Posted) {
            notifyTake(e.cycle, name_, e.status);
        }
    }
}

bool JamModule::takeBack(Released& x) {
    if (x.what != Released::What::LoopSave) return false;
    auto* d = static_cast<BufferData*>(x.ptr);
    if (d == saveLent_) {
        saveLent_ = nullptr;
        if (host_ && d->numFrames > 0) host_->setMix(saveCycle_, std::unique_ptr<BufferData>(d));
        else delete d;
        return true;
    }
    if (d == takeLent_) {
        takeLent_ = nullptr;
        if (guest_ && d->numFrames == session_.loopFrames) {
            guest_->post(takeLentCycle_, std::unique_ptr<BufferData>(d));
        } else {
            if (guest_) notifyTake(takeLentCycle_, name_, "not recorded: the loop is not one cycle long here");
            delete d;
        }
        return true;
    }
    return false;
}

} // namespace loopd
