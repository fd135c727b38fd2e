// Wiring: driver + engine + worker + recorder + controller + transport (real time), or the
// offline renderer. main() only parses flags and calls one of these.
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sndfile.h>
#include <spdlog/spdlog.h>

#include <osc/OscReceivedElements.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <thread>

#include "osc/Transport.h"
#include "osc/Validate.h"
#include "server/io/AudioFile.h"
#include "server/control/Controller.h"
#include "server/drivers/DeviceSupervisor.h"
#include "server/drivers/Driver.h"
#include "server/engine/Engine.h"
#include "server/app/Options.h"
#include "server/engine/StretchWorker.h"

namespace loopd {
namespace {

std::atomic<bool> g_signalled{false};
void onSignal(int) { g_signalled = true; }

// Applies --config / --bpm-config on top of the flags; throws with the reason.
FileConfig fileConfig(const Options& o) {
    FileConfig f;
    if (!o.bpmConfig.empty()) loadConfigFile(o.bpmConfig, f);
    if (!o.config.empty()) loadConfigFile(o.config, f);
    for (const auto& w : f.warnings) spdlog::warn("{}", w);
    return f;
}

// The same, reporting a bad file in the log; false: do not start.
bool loadFiles(const Options& o, FileConfig& files) {
    try {
        files = fileConfig(o);
        return true;
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return false;
    }
}

EngineConfig engineConfig(const Options& o, double rate, bool realtime, const FileConfig& f) {
    EngineConfig c;
    c.bpm = f.bpm > 0 ? f.bpm : o.bpm;
    c.beatsPerBar = f.meter > 0 ? f.meter : o.meter;
    c.followTempo = !o.disableTimeStretch;
    c.enableFilters = o.enableFilters;
    c.cueOutput = o.cueOut;
    if (o.cueOut >= 0 && o.cueOut + 1 >= o.outputs)
        throw std::runtime_error("--cue-out " + std::to_string(o.cueOut) + " needs --outputs of at least " + std::to_string(o.cueOut + 2));
    c.sampleRate = rate;
    c.blockSize = o.blockSize;
    c.numInputs = o.inputs;
    c.numOutputs = o.outputs;
    c.commandQueueSize = static_cast<size_t>(o.commandQueue);
    c.limiterCeilingDb = o.limiterCeilingDb;
    c.declickSeconds = o.declickMs / 1000.0;
    c.realtimeClock = realtime;
    c.captureSeconds = o.captureSeconds;
    return c;
}

ControllerOptions controllerOptions(const Options& o, bool offline, const FileConfig& f) {
    ControllerOptions c;
    c.bpm = f.bpm > 0 ? f.bpm : o.bpm;
    c.beatsPerBar = f.meter > 0 ? f.meter : o.meter;
    c.movement = f.movement;
    c.followTempo = !o.disableTimeStretch;
    c.stretchMethod = o.stretchMethod;
    c.maxBufferSamples = static_cast<int64_t>(o.maxBufferMb) * (1 << 20) / 4;
    c.offline = offline;
    c.loopSeconds = o.loopSeconds;
    c.undoSeconds = o.undoSeconds;
    c.maxMemoryBytes = o.maxMemoryMb > 0 ? int64_t(o.maxMemoryMb) << 20 : MemoryBudget::halfOfPhysicalMemory();
    return c;
}

// The Crowdstream server's startup flags, run as the OSC commands they stand for.
void runStartupActions(const Options& o, Controller& controller) {
    static const int32_t base[4] = {100, 1100, 2100, 3100};
    auto run = [&](const osc::MessageBuilder& m) { controller.runInternal(m.bytes()); };
    if (!o.ab.empty()) run(osc::MessageBuilder("/crossfade_levels").f(static_cast<float>(o.ab[0])).f(static_cast<float>(o.ab[1])));
    if (!o.levels.empty()) {
        osc::MessageBuilder m("/deck_levels");
        for (double v : o.levels) m.f(static_cast<float>(v));
        run(m);
    }
    if (o.watch) run(osc::MessageBuilder("/print_clock").i(1));
    for (int d = 0; d < 4; ++d) {
        if (o.deck[d].empty()) continue;
        run(osc::MessageBuilder("/load_buffer").i(base[d]).s(o.deck[d]));
        if (d == 2 && o.cAt >= 0) continue;
        run(osc::MessageBuilder("/play_stem").i(base[d]).f(static_cast<float>(o.rate)).f(static_cast<float>(o.vol)).i(1).f(0.0f));
    }
    if (!o.cPreload.empty() && o.deck[2].empty()) run(osc::MessageBuilder("/load_buffer").i(base[2]).s(o.cPreload));
    if (o.cAt >= 0) run(osc::MessageBuilder("/schedule_c_at").f(static_cast<float>(o.cAt)));
    for (int i = 0; i < o.loops; ++i) run(osc::MessageBuilder("/loop_add").i(2).f(0.0f));
    if (o.paMute) run(osc::MessageBuilder("/set").s("pa_mute").f(1.0f));
}

// Input + output latency the loopers compensate: the flags, else what the driver reports.
int roundTrip(const Options& o, Driver* driver) {
    const int reported = driver ? driver->roundTripFrames() : 0;
    if (o.inputLatency < 0 && o.outputLatency < 0) return reported;
    return std::max(0, o.inputLatency) + std::max(0, o.outputLatency);
}

} // namespace

int runServer(const Options& o) {
    // The ports first: a port in use stops the start before any device is touched.
    osc::Transport transport;
    osc::Transport::Options t;
    t.bindAddress = o.bind;
    t.udpPort = o.udpPort;
    t.tcpPort = o.tcpPort == -2 ? osc::Transport::kSameAsUdp : o.tcpPort;
    try {
        transport.open(t);
    } catch (const std::exception& e) {
        spdlog::critical("cannot listen: {}", e.what());
        return 1;
    }
    DriverOptions d;
    d.name = o.driver;
    d.device = o.device;
    d.sampleRate = o.sampleRate;
    d.periodFrames = o.bufferSize;
    d.numInputs = o.inputs;
    d.numOutputs = o.outputs;
    d.clientName = o.jackName;
    std::unique_ptr<Driver> driver;
    try {
        driver = openDriver(d);
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
    FileConfig files;
    if (!loadFiles(o, files)) return 1;
    // Keep the audio thread free of page faults: lock what is mapped now and what comes later
    // (best effort: needs root, CAP_IPC_LOCK or a memlock limit, as JACK's own clients do).
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) spdlog::debug("mlockall not permitted; pages may fault on the audio thread");
    PathPolicy paths(o.roots);
    const double rate = driver->sampleRate();
    const int period = driver->periodFrames();
    const std::string driverName = driver->name();
    EngineConfig ec = engineConfig(o, rate, true, files);
    ec.roundTripLatency = roundTrip(o, driver.get());
    ec.stretchAhead = true; // stretched players render ahead on the stretch worker
    Engine engine(ec);
    StretchWorker stretchWorker; // after the engine: stopped and gone before the engine frees nodes
    Worker worker;
    Recorder recorder(rate, false);
    Controller controller(engine, worker, recorder, paths, controllerOptions(o, false, files));
    controller.setDriverInfo(driverName, period);
    controller.setStretchWorker(&stretchWorker);
    controller.setSender([&transport](const osc::Endpoint& to, const char* data, size_t size) { return transport.send(to, data, size); });
    controller.setHostUrl("osc.udp://" + (o.bind == "0.0.0.0" ? std::string("localhost") : o.bind) + ":" + std::to_string(transport.udpPort()) + "/");
    // A lost device (JACK restarted, interface unplugged) falls back to the null driver and
    // comes back by itself; /notify clients hear `/driver state name detail`.
    DeviceSupervisor device(engine, d, std::move(driver), [&](const std::string& state, const std::string& name, const std::string& detail) {
        controller.setDriverInfo(name, period);
        controller.notifyAll(osc::MessageBuilder("/driver").s(state).s(name).s(detail));
    });

    worker.start();
    recorder.start();
    stretchWorker.start(o.stretchThreads);
    try {
        device.start();
    } catch (const std::exception& e) {
        spdlog::critical("cannot start driver {}: {}", driverName, e.what());
        return 1;
    }
    std::signal(SIGINT, onSignal);
    std::signal(SIGTERM, onSignal);
    // The startup actions first (the loops' memory is allocated here, which takes a while for
    // long loops): "ready" means a command sent now is served now, not after them.
    runStartupActions(o, controller);
    spdlog::info("loopd ready: OSC udp {}:{} tcp {}, driver {}, {} Hz, block {}, period {}, {} in / {} out{}",
                 o.bind, transport.udpPort(), transport.tcpPort(), driverName, rate, o.blockSize,
                 period, o.inputs, o.outputs, paths.roots().empty() ? ", file access unrestricted" : "");

    spdlog::info("memory budget {} ({} in use: rings and loops)", MemoryBudget::mb(controller.memoryBudget().limit()),
                 MemoryBudget::mb(controller.memoryBudget().used()));
    spdlog::info("looper: {} loop(s), {:.0f} s each (+{:.0f} s undo), input capture {:.0f} s, round-trip latency compensated {} frames",
                 o.loops, o.loopSeconds, o.undoSeconds, o.captureSeconds, ec.roundTripLatency);
    const auto handler = [&controller](const char* data, size_t size, const osc::Endpoint& from) {
        return controller.handlePacket(data, size, from);
    };
    while (!controller.quitRequested() && !g_signalled) {
        transport.poll(2, handler);
        for (uint64_t id : transport.takeClosed()) controller.forgetTcpClient(id);
        controller.pollReplies();
        device.poll();
    }
    spdlog::info("shutting down");
    // Close recordings cleanly: detach them on the audio thread, then let the recorder finish.
    controller.stopRecordings();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (recorder.active() > 0 && std::chrono::steady_clock::now() < deadline) {
        controller.pollReplies();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    device.stop();
    worker.stop();
    controller.pollReplies();
    stretchWorker.stop();
    recorder.stop();
    return 0;
}

int runNrt(const Options& o) {
    const std::string& scorePath = o.nrt.at(0);
    const std::string& inPath = o.nrt.at(1);
    const std::string& outPath = o.nrt.at(2);
    const double sr = o.sampleRate;

    // The score: [int32 big-endian length][OSC bundle] records.
    std::ifstream f(scorePath, std::ios::binary);
    if (!f) { spdlog::critical("cannot open score {}", scorePath); return 1; }
    std::vector<std::vector<char>> packets;
    for (;;) {
        uint32_t len = 0;
        if (!f.read(reinterpret_cast<char*>(&len), 4)) break;
        len = ntohl(len);
        if (len == 0 || len > (64u << 20)) { spdlog::critical("score {}: bad record length {}", scorePath, len); return 1; }
        std::vector<char> p(len);
        if (!f.read(p.data(), len)) { spdlog::critical("score {}: truncated record", scorePath); return 1; }
        packets.push_back(std::move(p));
    }
    std::vector<std::pair<uint64_t, size_t>> order; // (timetag, index)
    for (size_t i = 0; i < packets.size(); ++i) {
        if (const std::string why = osc::checkPacket(packets[i].data(), packets[i].size()); !why.empty()) {
            spdlog::critical("score {}: record {} is malformed: {}", scorePath, i, why);
            return 1;
        }
        try {
            ::osc::ReceivedPacket p(packets[i].data(), static_cast<::osc::osc_bundle_element_size_t>(packets[i].size()));
            if (!p.IsBundle()) { spdlog::critical("score {}: record {} is not a bundle", scorePath, i); return 1; }
            const uint64_t tag = ::osc::ReceivedBundle(p).TimeTag();
            order.emplace_back(tag == 1 ? 0 : tag, i);
        } catch (const ::osc::Exception& e) {
            spdlog::critical("score {}: record {} is malformed: {}", scorePath, i, e.what());
            return 1;
        }
    }
    std::stable_sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.first < b.first; });
    const uint64_t lastTag = order.empty() ? 0 : order.back().first;
    const int64_t totalFrames = static_cast<int64_t>((static_cast<unsigned __int128>(lastTag) * static_cast<uint64_t>(std::llround(sr)) + (1ull << 31)) >> 32);

    std::unique_ptr<BufferData> input;
    Options eo = o;
    if (inPath != "_") {
        try {
            LoadOptions lo;
            lo.targetRate = sr;
            input = loadAudioFile(inPath, lo);
        } catch (const std::exception& e) {
            spdlog::critical("{}", e.what());
            return 1;
        }
        eo.inputs = input->numChannels;
    }
    FileConfig files;
    if (!loadFiles(o, files)) return 1;
    EngineConfig ec = engineConfig(eo, sr, false, files);
    ec.roundTripLatency = roundTrip(o, nullptr);
    ec.commandQueueSize = std::max<size_t>(ec.commandQueueSize, 1 << 16);
    ec.maxCommandsPerBlock = 1 << 16;
    ec.schedulerCapacity = 1 << 16;
    Engine engine(ec);
    Worker worker(true);
    Recorder recorder(sr, true);
    PathPolicy paths(o.roots);
    Controller controller(engine, worker, recorder, paths, controllerOptions(o, true, files));
    controller.setDriverInfo("nrt", o.blockSize);
    controller.setSender([](const osc::Endpoint&, const char* data, size_t size) {
        try {
            ::osc::ReceivedMessage m(::osc::ReceivedPacket(data, static_cast<::osc::osc_bundle_element_size_t>(size)));
            if (std::strcmp(m.AddressPattern(), "/fail") == 0) {
                auto it = m.ArgumentsBegin();
                const std::string a = it->AsString();
                ++it;
                spdlog::warn("nrt: /fail {} {}", a, it->AsString());
            }
        } catch (...) {
        }
        return true;
    });

    SF_INFO info{};
    info.channels = ec.numOutputs;
    info.samplerate = static_cast<int>(std::lround(sr));
    info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
    SNDFILE* out = sf_open(outPath.c_str(), SFM_WRITE, &info);
    if (!out) { spdlog::critical("cannot write {}: {}", outPath, sf_strerror(nullptr)); return 1; }
    // Deterministic files: no date or software strings that change between runs.
    sf_command(out, SFC_SET_ADD_PEAK_CHUNK, nullptr, SF_FALSE);

    const int B = ec.blockSize;
    std::vector<float> inBlock(static_cast<size_t>(std::max(1, ec.numInputs) * B));
    std::vector<float> outBlock(static_cast<size_t>(ec.numOutputs * B));
    std::vector<const float*> inPtr;
    std::vector<float*> outPtr;
    for (int c = 0; c < std::max(1, ec.numInputs); ++c) inPtr.push_back(inBlock.data() + c * B);
    for (int c = 0; c < ec.numOutputs; ++c) outPtr.push_back(outBlock.data() + c * B);
    // Output is written in large chunks: one libsndfile call per block would dominate light scores.
    constexpr int64_t kWriteFrames = 16384;
    std::vector<float> inter(static_cast<size_t>(ec.numOutputs) * static_cast<size_t>(kWriteFrames + B));
    int64_t pending = 0;
    const osc::Endpoint nowhere;

    const auto t0 = std::chrono::steady_clock::now();
    size_t next = 0;
    int64_t pos = 0;
    // File frame k is engine frame k + latency: the limiter's look-ahead is compensated.
    const int64_t latency = engine.latencySamples();
    int64_t written = 0;
    while (written < totalFrames || next < order.size()) {
        // Hand over every bundle that falls before the end of this block.
        while (next < order.size()) {
            const uint64_t tag = order[next].first;
            const int64_t at = static_cast<int64_t>((static_cast<unsigned __int128>(tag) * static_cast<uint64_t>(std::llround(sr)) + (1ull << 31)) >> 32);
            if (at >= pos + B) break;
            const auto& p = packets[order[next].second];
            controller.handlePacket(p.data(), p.size(), nowhere);
            ++next;
        }
        for (int c = 0; c < ec.numInputs; ++c) {
            float* dst = inBlock.data() + c * B;
            for (int i = 0; i < B; ++i) {
                const int64_t k = pos + i;
                dst[i] = input && k < input->numFrames ? input->channel(c)[k] : 0.0f;
            }
        }
        engine.process(inPtr.data(), outPtr.data());
        controller.pollReplies();
        recorder.drainAll();
        const int64_t skip = std::clamp<int64_t>(latency - pos, 0, B);
        const int64_t keep = std::min<int64_t>(B - skip, totalFrames - written);
        if (keep > 0) {
            for (int64_t i = 0; i < keep; ++i)
                for (int c = 0; c < ec.numOutputs; ++c)
                    inter[static_cast<size_t>((pending + i) * ec.numOutputs + c)] = outBlock[static_cast<size_t>(c * B + skip + i)];
            pending += keep;
            written += keep;
            if (pending >= kWriteFrames) { sf_writef_float(out, inter.data(), pending); pending = 0; }
        }
        pos += B;
    }
    if (pending > 0) sf_writef_float(out, inter.data(), pending);
    // Close recordings made by the score.
    controller.stopRecordings();
    engine.process(inPtr.data(), outPtr.data());
    controller.pollReplies();
    sf_close(out);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double dur = static_cast<double>(totalFrames) / sr;
    spdlog::info("nrt: rendered {} frames ({:.3f} s) in {:.3f} s ({:.1f}x real time), {} failed commands",
                 totalFrames, dur, secs, secs > 0 ? dur / secs : 0.0, controller.failCount());
    return 0;
}

} // namespace loopd
