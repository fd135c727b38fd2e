#include "server/control/Controller.h"

#include "server/nodes/Registry.h"

#include <spdlog/spdlog.h>

#include <osc/OscPrintReceivedElements.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <thread>

#include "osc/Validate.h"
#include "server/control/ScsynthCommands.h"
#include "server/io/AudioFile.h"
#include "server/engine/BufferData.h"
#include "server/engine/Group.h"
#include "server/nodes/looper/Looper.h" // loopCtlName: the looper fail reasons
#include "server/compat/crowdstream/Crowdstream.h"
#include "server/compat/sooperlooper/SooperLooper.h"
#include "server/tempo/TempoCommands.h"
#include "server/analysis/AnalysisModule.h"
#include "server/midi/MidiModule.h"
#include "server/library/BankModule.h"
#include "server/library/ProjectModule.h"
#include "server/net/JamModule.h"
#include "server/net/LinkModule.h"
#include "server/control/Buffers.h"
#include "server/control/ControlClock.h"
#include "server/io/SessionLog.h"
#include "server/control/Nodes.h"
#include "server/app/Version.h"

namespace loopd {
namespace {
constexpr size_t kMaxClients = 256;

// What a client sent, made safe for a log line: bytes outside printable ASCII as \xNN (no
// terminal escapes, no broken UTF-8 in the log), at most 300 characters.
std::string printable(const std::string& text) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char ch : text) {
        if (out.size() >= 300) { out += "..."; break; }
        if (ch >= 0x20 && ch < 0x7f) out += static_cast<char>(ch);
        else { out += "\\x"; out += hex[ch >> 4]; out += hex[ch & 15]; }
    }
    return out;
}

} // namespace

Controller::Controller(Engine& engine, Worker& worker, Recorder& recorder, const PathPolicy& paths,
                       const ControllerOptions& options)
    : engine_(engine), worker_(worker), recorder_(recorder), paths_(paths), options_(options),
      budget_(options.maxMemoryBytes), engineMemory_(budget_.account(engine.fixedMemoryBytes())),
      controlThread_(std::this_thread::get_id()) {
    const EngineConfig& c = engine_.config();
    paramCtx_.sampleRate = c.sampleRate;
    paramCtx_.blockSize = c.blockSize;
    paramCtx_.numBuffers = c.maxBuffers;
    paramCtx_.numInputs = c.numInputs;
    paramCtx_.numOutputs = c.numOutputs;
    paramCtx_.declickSamples = std::llround(c.declickSeconds * c.sampleRate);
    paramCtx_.smoothSamples = std::llround(c.smoothSeconds * c.sampleRate);
    rateWallTime_ = std::chrono::steady_clock::now();
    actualRate_ = c.sampleRate;

    on("/status", &Controller::hStatus);
    on("/version", &Controller::hVersion);
    on("/notify", &Controller::hNotify);
    on("/dumpOSC", &Controller::hDumpOsc);
    on("/quit", &Controller::hQuit);
    on("/sync", &Controller::hSync);
    on("/error", &Controller::hError);
    on("/reply_format", &Controller::hReplyFormat);
    for (const char* a : {"/d_recv", "/d_load", "/d_loadDir", "/d_free", "/d_freeAll"}) on(a, &Controller::hSynthDef);
    on("/rec_start", &Controller::hRecStart);
    on("/rec_stop", &Controller::hRecStop);
    registerScsynthExtras();
    if (const auto v = paramEnumValue(ParamId::Stretch, options_.stretchMethod)) defaultStretch_ = *v;
    buffers_ = &addModule<Buffers>();
    nodes_ = &addModule<Nodes>();
    TempoCommands& tempo = addModule<TempoCommands>();
    Crowdstream& crowdstream = addModule<Crowdstream>();
    SooperLooper& sooperLooper = addModule<SooperLooper>(tempo);
    addModule<MidiModule>(sooperLooper);
    addModule<AnalysisModule>(tempo, *buffers_);
    addModule<LinkModule>(tempo);
    addModule<JamModule>(sooperLooper);
    addModule<BankModule>(*buffers_, sooperLooper);
    addModule<ProjectModule>(*buffers_, sooperLooper, tempo, crowdstream);
}

void Controller::route(const char* address, bool prefix, Handler h) {
    if (prefix) prefixes_.emplace_back(address, std::move(h));
    else handlers_[address] = {address, std::move(h)};
}

void Controller::runInternal(const std::vector<char>& packet) {
    // Not in the session log: what the server runs by itself (startup flags, bindings) a replay
    // runs by itself too.
    SessionLog* log = sessionLog_;
    sessionLog_ = nullptr;
    handlePacket(packet.data(), packet.size(), osc::Endpoint{});
    sessionLog_ = log;
}

Controller::~Controller() = default;

void Controller::setDriverInfo(const std::string& name, int periodFrames) {
    options_.driverName = name;
    options_.periodFrames = periodFrames;
}

// ---------------------------------------------------------------------------------------------
// Clients and replies

uint16_t Controller::clientFor(const osc::Endpoint& e) {
    std::lock_guard<std::mutex> lock(clientsMutex_);
    for (size_t i = 0; i < clients_.size(); ++i)
        if (clients_[i] == e) return static_cast<uint16_t>(i);
    if (clients_.size() < kMaxClients) {
        clients_.push_back(e);
        return static_cast<uint16_t>(clients_.size() - 1);
    }
    // Reuse the oldest slot that is not registered for notifications.
    for (size_t tries = 0; tries < kMaxClients; ++tries) {
        const size_t i = nextEvict_++ % kMaxClients;
        if (std::find(notify_.begin(), notify_.end(), static_cast<uint16_t>(i)) != notify_.end()) continue;
        clients_[i] = e;
        if (i < float32Only_.size()) float32Only_[i] = false;
        if (i < errorsOff_.size()) errorsOff_[i] = false;
        return static_cast<uint16_t>(i);
    }
    clients_[0] = e;
    return 0;
}

void Controller::send(uint16_t client, const osc::MessageBuilder& m) {
    osc::Endpoint to;
    bool float32 = false;
    {
        std::lock_guard<std::mutex> lock(clientsMutex_);
        if (client >= clients_.size()) return;
        to = clients_[client];
        float32 = client < float32Only_.size() && float32Only_[client];
    }
    const auto bytes = m.bytes(float32);
    if (sender_) sender_(to, bytes.data(), bytes.size());
}

void Controller::forgetTcpClient(uint64_t tcpId) {
    if (sessionLog_) sessionLog_->tcpClosed(engine_.sampleTime(), tcpId);
    std::lock_guard<std::mutex> lock(clientsMutex_);
    for (size_t i = 0; i < clients_.size(); ++i) {
        if (clients_[i].kind != osc::Endpoint::Kind::Tcp || clients_[i].tcpId != tcpId) continue;
        const auto c = static_cast<uint16_t>(i);
        notify_.erase(std::remove(notify_.begin(), notify_.end(), c), notify_.end());
        for (auto& l : loginOf_) if (l == c) l = kNoClient;
        clients_[i] = osc::Endpoint{}; // the slot is free for the next client
        if (i < float32Only_.size()) float32Only_[i] = false;
        if (i < errorsOff_.size()) errorsOff_[i] = false;
    }
}

void Controller::broadcast(const osc::MessageBuilder& m) {
    std::vector<uint16_t> targets;
    {
        std::lock_guard<std::mutex> lock(clientsMutex_);
        targets = notify_;
    }
    for (uint16_t c : targets) send(c, m);
}

void Controller::fail(uint16_t client, const char* address, const std::string& reason, bool log) {
    fails_.fetch_add(1);
    osc::Endpoint who;
    bool quiet = false; // /error 0, or -1 in the bundle being handled
    {
        std::lock_guard<std::mutex> lock(clientsMutex_);
        if (client < clients_.size()) who = clients_[client];
        if (client < errorsOff_.size()) quiet = errorsOff_[client];
    }
    if (std::this_thread::get_id() == controlThread_ && bundleErrors_ != 0) quiet = bundleErrors_ == -1;
    // Every failure is logged with the client's address, as scsynth does (rate-limited: a flood
    // of bad packets must not fill the disk). Offline renders report failures themselves.
    uint64_t heldBack = 0;
    if (!log) {
        spdlog::debug("/fail {} from {}: {}", printable(address), who.kind == osc::Endpoint::Kind::None ? std::string("startup") : who.str(), printable(reason));
    } else if (!options_.offline && failLog_.allow(heldBack)) {
        if (heldBack > 0) spdlog::warn("({} more failures were not logged)", heldBack);
        spdlog::warn("/fail {} from {}: {}", printable(address), who.kind == osc::Endpoint::Kind::None ? std::string("startup") : who.str(), printable(reason));
    } else if (options_.offline) {
        spdlog::debug("/fail {} {}", address, reason);
    }
    if (!quiet) send(client, osc::MessageBuilder("/fail").s(address).s(reason));
}

void Controller::hReplyFormat(Msg& m) {
    // What this client receives: `float32` turns every double and int64 in replies and
    // notifications into 32-bit floats and ints (Pd's [oscparse] knows no 'd' or 'h'); `full`
    // restores them.
    const std::string format = m.args.string("format");
    m.args.expectEnd();
    if (format != "float32" && format != "full") throw osc::ArgError("format must be float32 or full, got '" + format + "'");
    {
        std::lock_guard<std::mutex> lock(clientsMutex_);
        if (float32Only_.size() <= m.client) float32Only_.resize(static_cast<size_t>(m.client) + 1, false);
        float32Only_[m.client] = format == "float32";
    }
    done(m.client, m.address);
}

void Controller::hError(Msg& m) {
    // scsynth's /error: 0 turns this client's /fail replies off, 1 on; -1 and -2 do the same for
    // the rest of the bundle the message is in. Failures are logged either way.
    const int32_t mode = m.args.int32("mode");
    m.args.expectEnd();
    if (mode < -2 || mode > 1) throw osc::ArgError("mode must be 1 (on), 0 (off), -1 (off in this bundle) or -2 (on in this bundle)");
    if (mode < 0) {
        bundleErrors_ = static_cast<int8_t>(mode);
        return;
    }
    std::lock_guard<std::mutex> lock(clientsMutex_);
    if (errorsOff_.size() <= m.client) errorsOff_.resize(static_cast<size_t>(m.client) + 1, false);
    errorsOff_[m.client] = mode == 0;
}

void Controller::hSynthDef(Msg& m) {
    // loopd's node types are built in: a SynthDef cannot be loaded. One /fail per packet (sclang
    // sends its default SynthDefs in many), logged once per client.
    if (synthDefRefused_) return;
    synthDefRefused_ = true;
    const bool first = synthDefWarned_.insert(m.client).second;
    if (first) spdlog::warn("{} from a client: loopd has no SynthDefs (further SynthDef commands of this client are not logged)", m.address);
    fail(m.client, m.address,
         "loopd has built-in node types (player, input, looper, eq3, filter, delay, reverb, stutter, limiter, gain) "
         "and loads no SynthDefs: use /s_new with one of them",
         false);
}

void Controller::done(uint16_t client, const char* address, std::initializer_list<int32_t> ids) {
    osc::MessageBuilder m("/done");
    m.s(address);
    for (int32_t id : ids) m.i(id);
    send(client, m);
}

bool Controller::push(Msg& m, CommandBody&& body) {
    Command c;
    c.timetag = m.timetag;
    c.address = m.address;
    c.client = m.client;
    c.body = std::move(body);
    if (engine_.pushCommand(std::move(c), !lossless_)) return true;
    if (lossless_) {
        // A TCP packet bigger than the room handlePacket waited for: wait for the audio thread
        // to make room (it drains the queue every block), as long as it is running.
        int64_t seen = engine_.sampleTime();
        auto progress = std::chrono::steady_clock::now();
        for (;;) {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            if (engine_.pushCommand(std::move(c), false)) return true;
            const auto now = std::chrono::steady_clock::now();
            if (engine_.sampleTime() != seen) { seen = engine_.sampleTime(); progress = now; }
            else if (now - progress > std::chrono::seconds(2)) break; // the audio thread stands still
        }
        if (engine_.pushCommand(std::move(c))) return true; // else counts the drop
    }
    // Not moved on failure: free what it carried.
    if (auto* n = std::get_if<cmd::NewNode>(&c.body)) disposeNode(n->node);
    if (auto* u = std::get_if<cmd::Unit>(&c.body)) delete u->buffer; // (a voice's owner frees it: it is registered)
    if (auto* t = std::get_if<cmd::QueryTree>(&c.body)) delete t->snapshot;
    fail(m.client, m.address, "command queue full (" + std::to_string(engine_.config().commandQueueSize) +
                                  " commands waiting); the command was not run");
    return false;
}

bool Controller::pushFromWorker(uint16_t client, const char* address, uint64_t timetag, CommandBody&& body) {
    Command c;
    c.timetag = timetag;
    c.address = address;
    c.client = client;
    c.body = std::move(body);
    if (engine_.pushWorkerCommand(std::move(c))) return true;
    fail(client, address, "command queue full; the command was not run");
    return false;
}

// ---------------------------------------------------------------------------------------------
// Packets

bool Controller::handlePacket(const char* data, size_t size, const osc::Endpoint& from) {
    // Every handler of one packet sees one "now" (a replay sets it to the logged one itself).
    const int64_t at = engine_.sampleTime();
    if (!options_.replay) control_clock::hold();
    const uint16_t client = clientFor(from);
    const bool taken = handleFrom(client, data, size, from.kind == osc::Endpoint::Kind::Tcp, true);
    if (taken && sessionLog_) sessionLog_->packet(at, control_clock::ntp(), control_clock::steadySeconds(), from, data, size);
    if (!options_.replay) control_clock::release();
    return taken;
}

bool Controller::handleFrom(uint16_t client, const char* data, size_t size, bool tcp, bool mayDefer) {
    synthDefRefused_ = false; // one /fail per packet for SynthDef commands
    // Nothing decodes a packet before it is known to be well formed (oscpack does not check
    // every size against the data).
    osc::PacketShape shape;
    if (const std::string why = osc::checkPacket(data, size, &shape); !why.empty()) {
        fail(client, "/?", "malformed OSC packet: " + why);
        return true;
    }
    // TCP is lossless: a packet waits (the transport stops reading its connection) until the
    // command queue has room for everything it could ask for. A message makes at most one
    // command per argument plus a few (a deck or loop created on the way).
    lossless_ = tcp;
    if (lossless_ && mayDefer) {
        const size_t need = std::min(shape.messages * kCommandsPerMessage + shape.arguments, engine_.config().commandQueueSize);
        if (engine_.commandSpace() < need) return false;
    }
    try {
        ::osc::ReceivedPacket p(data, static_cast<::osc::osc_bundle_element_size_t>(size));
        if (p.IsBundle()) handleBundle(::osc::ReceivedBundle(p), client, 0);
        else handleMessage(::osc::ReceivedMessage(p), 0, client);
    } catch (const ::osc::Exception& e) {
        fail(client, "/?", std::string("malformed OSC packet: ") + e.what());
    }
    lossless_ = false;
    return true;
}

void Controller::handleBundle(const ::osc::ReceivedBundle& b, uint16_t client, int depth) {
    if (depth > 8) { fail(client, "#bundle", "bundles nested too deep"); return; }
    const uint64_t tag = b.TimeTag() == 1 ? 0 : b.TimeTag();
    // /error -1 and -2 hold for the rest of the bundle they are in (scsynth's bundle-local mode).
    const int8_t outer = bundleErrors_;
    for (auto it = b.ElementsBegin(); it != b.ElementsEnd(); ++it) {
        if (it->IsBundle()) handleBundle(::osc::ReceivedBundle(*it), client, depth + 1);
        else handleMessage(::osc::ReceivedMessage(*it), tag, client);
    }
    bundleErrors_ = outer;
}

void Controller::handleMessage(const ::osc::ReceivedMessage& m, uint64_t timetag, uint16_t client) {
    std::string address;
    if (m.AddressPatternIsUInt32()) {
        // scsynth's command numbers, as sclang sends them.
        const uint32_t n = m.AddressPatternAsUInt32();
        const char* name = scsynthCommandName(n);
        if (!name) { fail(client, "/?", "unknown command number " + std::to_string(n)); return; }
        address = name;
    } else {
        address = m.AddressPattern();
    }
    if (dumpOsc_) {
        std::ostringstream s;
        s << m;
        spdlog::info("dumpOSC: {}{} {}", printable(address), m.AddressPatternIsUInt32() ? " (by number)" : "", printable(s.str()));
    }
    const Handler* handler = nullptr;
    const char* name = nullptr;
    if (auto h = handlers_.find(address); h != handlers_.end()) {
        handler = &h->second.second;
        name = h->second.first;
    } else {
        size_t best = 0;
        for (const auto& [prefix, ph] : prefixes_)
            if (prefix.size() > best && address.rfind(prefix, 0) == 0) { handler = &ph; best = prefix.size(); }
        if (handler) {
            routedAddress_ = address; // the handler reads the whole address (/sl/3/hit)
            name = routedAddress_.c_str();
        }
    }
    if (!handler) {
        fail(client, "/?", "unknown command " + address);
        return;
    }
    osc::ArgReader args(m);
    Msg msg{name, args, timetag, client};
    // An asynchronous command's completion message runs when it has finished.
    if (takesCompletionMessage(msg.address)) {
        std::vector<char> completion = args.takeTrailingBlob();
        if (!completion.empty()) {
            if (const std::string why = osc::checkPacket(completion.data(), completion.size()); !why.empty()) {
                fail(client, msg.address, "malformed completion message: " + why);
                return;
            }
            msg.completion = registerCompletion(client, std::move(completion));
        }
    }
    try {
        (*handler)(msg);
        return;
    } catch (const osc::ArgError& e) {
        fail(client, msg.address, e.what());
    } catch (const ::osc::Exception& e) {
        fail(client, msg.address, std::string("malformed arguments: ") + e.what());
    } catch (const std::exception& e) {
        fail(client, msg.address, e.what());
    }
    dropCompletion(msg.completion); // the command never started
}

// ---------------------------------------------------------------------------------------------
// Completion messages (scsynth's): a packet that runs, as if the same client had sent it, once
// an asynchronous command has finished, before its /done.

uint32_t Controller::registerCompletion(uint16_t client, std::vector<char> packet) {
    std::lock_guard<std::mutex> lock(completionsMutex_);
    uint32_t id = nextCompletion_++;
    if (id == 0) id = nextCompletion_++;
    completions_[id] = Completion{client, std::move(packet)};
    return id;
}

void Controller::dropCompletion(uint32_t id) {
    if (id == 0) return;
    std::lock_guard<std::mutex> lock(completionsMutex_);
    completions_.erase(id);
}

void Controller::finishAsync(uint16_t client, const char* address, int32_t id, uint32_t completion) {
    {
        std::lock_guard<std::mutex> lock(completionsMutex_);
        finished_.push_back(Finished{client, address, id, completion});
    }
    engine_.wakeControl();
}

void Controller::failAsync(uint16_t client, const char* address, const std::string& reason, uint32_t completion) {
    dropCompletion(completion);
    fail(client, address, reason);
}

void Controller::complete(uint16_t client, const char* address, int32_t id, uint32_t completion) {
    if (options_.replay && completion != 0 && !runningHeld_) {
        // A replay runs a completion message where the session log says the live one ran.
        heldCompletions_.push_back(Finished{client, address, id, completion});
        return;
    }
    Completion c;
    bool found = false;
    if (completion != 0) {
        std::lock_guard<std::mutex> lock(completionsMutex_);
        if (auto it = completions_.find(completion); it != completions_.end()) {
            c = std::move(it->second);
            completions_.erase(it);
            found = true;
        }
    }
    if (found) {
        bool tcp = false;
        {
            std::lock_guard<std::mutex> lock(clientsMutex_);
            if (c.client < clients_.size()) tcp = clients_[c.client].kind == osc::Endpoint::Kind::Tcp;
        }
        // Runs now, whatever the queue holds: over TCP its commands wait for room rather than
        // the packet being offered again.
        const bool wasLossless = lossless_;
        const bool hold = !options_.replay;
        if (hold) control_clock::hold();
        if (sessionLog_) sessionLog_->completion(engine_.sampleTime(), control_clock::ntp(), control_clock::steadySeconds(), completion);
        handleFrom(c.client, c.packet.data(), c.packet.size(), tcp, false);
        if (hold) control_clock::release();
        lossless_ = wasLossless;
    }
    done(client, address, {id});
}

bool Controller::runCompletion(uint32_t id) {
    for (size_t i = 0; i < heldCompletions_.size(); ++i) {
        if (heldCompletions_[i].completion != id) continue;
        const Finished f = heldCompletions_[i];
        heldCompletions_.erase(heldCompletions_.begin() + static_cast<long>(i));
        runningHeld_ = true;
        complete(f.client, f.address, f.id, f.completion);
        runningHeld_ = false;
        return true;
    }
    return false;
}

void Controller::flushSessionLog() {
    if (!sessionLog_) return;
    Engine::SessionMark m;
    while (engine_.popSessionMark(m)) sessionLog_->mark(SessionMarkRecord{m.sample, m.control, m.worker, m.hash, m.blockNtp});
    if (const uint64_t lost = engine_.sessionMarksLost(); lost != marksLostLogged_) {
        sessionLog_->marksLost(engine_.sampleTime(), lost - marksLostLogged_);
        marksLostLogged_ = lost;
    }
    sessionLog_->flush();
}

// ---------------------------------------------------------------------------------------------
// Engine replies

std::string Controller::failReason(const reply::Fail& f) const {
    auto param = [&] { return std::string(paramName(f.param)); };
    switch (f.code) {
    case FailCode::NodeNotFound: return "node " + std::to_string(f.a) + " not found";
    case FailCode::GroupNotFound: return "group " + std::to_string(f.a) + " not found";
    case FailCode::NodeIdInUse: return "node id " + std::to_string(f.a) + " is already in use";
    case FailCode::NotAGroup:
        return f.a == 0 ? std::string("nothing can be placed beside the root group 0")
                        : "node " + std::to_string(f.a) + " is not a group";
    case FailCode::NoSuchParam: {
        static const char* kinds[] = {"group", "player", "input", "effect", "looper"};
        const char* k = f.b >= 0 && f.b < 5 ? kinds[f.b] : "node";
        return std::string(k) + " " + std::to_string(f.a) + " has no parameter '" + param() + "'";
    }
    case FailCode::BadParamValue:
        return "value " + formatNumber(f.value) + " is out of range for '" + param() + "' of node " + std::to_string(f.a);
    case FailCode::NotRampable: return "'" + param() + "' cannot be ramped";
    case FailCode::SchedulerFull: return "scheduler full (" + std::to_string(f.a) + " timed commands waiting)";
    case FailCode::TooManyNodes: return "too many nodes (limit " + std::to_string(f.a) + ")";
    case FailCode::TreeTooDeep: return "groups nested too deep (limit " + std::to_string(f.b) + ")";
    case FailCode::MoveIntoSelf:
        return "cannot move node " + std::to_string(f.a) + " into its own subtree (target " + std::to_string(f.b) + ")";
    case FailCode::CannotFreeRoot: return "the root group 0 cannot be freed or paused";
    case FailCode::RecorderGroupNotFound: return "group " + std::to_string(f.a) + " not found for recording";
    case FailCode::RecorderNotFound:
        return f.a < 0 ? std::string("no recording is running") : "no recording " + std::to_string(f.a) + " is running";
    case FailCode::RecorderSlotsFull: return "too many recordings at once (limit " + std::to_string(f.a) + ")";
    case FailCode::TreeTruncated: return "tree too large to report";
    case FailCode::GroupStartsFull: return "too many group starts waiting (limit " + std::to_string(f.a) + ")";
    case FailCode::WrongNodeKind:
        return "node " + std::to_string(f.a) + " is not a " + Node::kindName(static_cast<Node::Kind>(f.b));
    case FailCode::LoopValueOutOfRange:
        return "value " + formatNumber(f.value) + " is out of range for '" + std::string(loopCtlName(static_cast<LoopCtl>(f.b)) ? loopCtlName(static_cast<LoopCtl>(f.b)) : "?") + "'";
    case FailCode::LoopBusy: return "looper " + std::to_string(f.a) + " is already saving";
    case FailCode::OwnedNode:
    case FailCode::HoldsOwnedNode: {
        const auto owner = static_cast<Node::Owner>(f.code == FailCode::OwnedNode ? f.b : static_cast<int32_t>(f.value));
        const std::string who = owner == Node::Owner::Looper
                                    ? "the looper (/loop_del removes a loop)"
                                    : "the Crowdstream decks (/stop_stem and /mixer_cleanup remove stems)";
        if (f.code == FailCode::OwnedNode) return "node " + std::to_string(f.a) + " belongs to " + who;
        return "group " + std::to_string(f.a) + " holds node " + std::to_string(f.b) + ", which belongs to " + who;
    }
    case FailCode::BusOutOfRange:
        return "control bus " + std::to_string(f.a) + " out of range (0.." + std::to_string(f.b - 1) + ")";
    case FailCode::TooManyMaps: return "node " + std::to_string(f.a) + " already follows " + std::to_string(f.b) + " buses (the limit)";
    case FailCode::GroupStartTimedOut:
        return "not every deck finished loading in time; the ready ones started together, the others start when loaded";
    }
    return "failed";
}

int Controller::idleTimeoutMs() const {
    int ms = kIdlePollMs;
    for (const auto& mod : modules_)
        if (const int m = mod->pollWithinMs(); m >= 0) ms = std::min(ms, m);
    return ms;
}

void Controller::pollReplies() {
    // Asynchronous commands the worker finished (their completion messages run here, on the
    // control thread, before their /done), before the engine's replies: a /sync the worker
    // passed on after them must answer after them.
    std::vector<Finished> finished;
    {
        std::lock_guard<std::mutex> lock(completionsMutex_);
        finished.swap(finished_);
    }
    for (const auto& f : finished) complete(f.client, f.address, f.id, f.completion);
    Reply r;
    while (engine_.popReply(r)) {
        std::visit(
            [&](auto& b) {
                using T = std::decay_t<decltype(b)>;
                if constexpr (std::is_same_v<T, reply::Done>) {
                    if (b.hasId) done(r.client, b.address, {b.id}); else done(r.client, b.address);
                } else if constexpr (std::is_same_v<T, reply::Fail>) {
                    fail(r.client, b.address, failReason(b));
                } else if constexpr (std::is_same_v<T, reply::Beat>) {
                    broadcast(osc::MessageBuilder("/beat").i(b.bar).i(b.beatInBar).f(static_cast<float>(b.bpm)).d(static_cast<double>(b.sampleTime)));
                    for (auto& mod : modules_) mod->onBeat(b);
                } else if constexpr (std::is_same_v<T, reply::ParamValues>) {
                    osc::MessageBuilder m("/n_set");
                    m.i(b.id);
                    for (int i = 0; i < b.count; ++i) m.s(paramName(b.params[i])).f(b.values[i]);
                    send(r.client, m);
                } else if constexpr (std::is_same_v<T, reply::BusValues>) {
                    osc::MessageBuilder m(b.asSetn ? "/c_setn" : "/c_set");
                    if (b.asSetn) {
                        m.i(b.first).i(b.count);
                        for (int i = 0; i < b.count; ++i) m.f(b.values[i]);
                    } else {
                        for (int i = 0; i < b.count; ++i) m.i(b.first + i).f(b.values[i]);
                    }
                    send(r.client, m);
                } else if constexpr (std::is_same_v<T, reply::NodeEvent>) {
                    if (b.trace) {
                        spdlog::info("n_trace: node {} ({}) parent {} prev {} next {}{}", b.id, Node::kindName(static_cast<Node::Kind>(b.nodeKind)),
                                     b.parent, b.prev, b.next, b.isGroup ? fmt::format(" head {} tail {}", b.head, b.tail) : std::string());
                        return;
                    }
                    if (b.kind == NodeEventKind::End)
                        for (auto& mod : modules_) mod->onNodeEnded(b.id);
                    static const char* names[] = {"/n_go", "/n_end", "/n_off", "/n_on", "/n_move", "/n_info"};
                    osc::MessageBuilder m(names[static_cast<int>(b.kind)]);
                    m.i(b.id).i(b.parent).i(b.prev).i(b.next).i(b.isGroup ? 1 : 0);
                    if (b.isGroup) m.i(b.head).i(b.tail);
                    m.d(static_cast<double>(b.sampleTime));
                    if (b.kind == NodeEventKind::Info) send(r.client, m);
                    else broadcast(m);
                } else if constexpr (std::is_same_v<T, reply::Late>) {
                    send(r.client, osc::MessageBuilder("/late").d(b.seconds).s(b.address));
                } else if constexpr (std::is_same_v<T, reply::Synced>) {
                    // Once more through the worker: a completion message run above (before this
                    // reply) may have posted work there (/b_query), which must answer first.
                    const uint16_t client = r.client;
                    const int32_t id = b.id;
                    worker_.post([this, client, id] { send(client, osc::MessageBuilder("/synced").i(id)); });
                } else if constexpr (std::is_same_v<T, reply::BufferSwapped>) {
                    if (b.announce) complete(r.client, b.address, b.bufnum, b.completion);
                    else dropCompletion(b.completion);
                } else if constexpr (std::is_same_v<T, reply::TreeReady>) {
                    std::unique_ptr<TreeSnapshot> s(b.snapshot);
                    if (s->dropped) return;
                    if (s->full) {
                        for (auto& mod : modules_)
                            if (mod->takeSnapshot(s)) return;
                        return;
                    }
                    const char* address = s->dump ? "/g_dumpTree" : "/g_queryTree";
                    if (!s->found) { fail(r.client, address, "group " + std::to_string(s->rootId) + " not found"); return; }
                    if (s->dump) { dumpTree(*s); return; }
                    osc::MessageBuilder m("/g_queryTree.reply");
                    m.i(s->withControls ? 1 : 0);
                    for (const auto& e : s->entries) {
                        m.i(e.id).i(e.numChildren);
                        if (e.numChildren < 0) {
                            m.s(Node::kindName(static_cast<Node::Kind>(e.kind)));
                            if (s->withControls) m.i(2).s("buf").f(static_cast<float>(e.buf)).s("gain").f(e.gain);
                        }
                    }
                    send(r.client, m);
                    if (s->truncated) spdlog::warn("/g_queryTree reply truncated");
                } else if constexpr (std::is_same_v<T, reply::Log>) {
                    spdlog::log(static_cast<spdlog::level::level_enum>(b.level), "{}", b.text);
                }
            },
            r.body);
    }
    for (Released x; engine_.popReleased(x);) takeBack(x);
    for (auto& mod : modules_) mod->poll();
    const auto now = std::chrono::steady_clock::now();
    // Device xruns and stretch underruns reach /notify clients (at most every 100 ms, with the
    // running count and the engine sample time).
    if (now - lastTroubleCheck_ >= std::chrono::milliseconds(100)) {
        lastTroubleCheck_ = now;
        const EngineStats st = engine_.stats();
        if (st.xruns != notifiedXruns_) {
            notifiedXruns_ = st.xruns;
            broadcast(osc::MessageBuilder("/xrun").i(static_cast<int32_t>(st.xruns)).d(static_cast<double>(st.sampleTime)));
        }
        if (st.stretchUnderruns != notifiedUnderruns_) {
            notifiedUnderruns_ = st.stretchUnderruns;
            broadcast(osc::MessageBuilder("/stretch_underrun").i(static_cast<int32_t>(st.stretchUnderruns)).d(static_cast<double>(st.sampleTime)));
        }
        // A stretch thread that could not keep up shed a player (varispeed), or took one back.
        if (stretchWorker_)
            for (const auto& e : stretchWorker_->takeShedEvents())
                broadcast(osc::MessageBuilder("/stretch_shed").i(e.nodeId).i(e.shed ? 1 : 0).i(stretchWorker_->shedVoices())
                              .f(static_cast<float>(100.0 * e.busy)).d(static_cast<double>(st.sampleTime)));
    }
    // Measured sample rate, over windows of at least two seconds.
    const double wall = std::chrono::duration<double>(now - rateWallTime_).count();
    if (wall >= 2.0) {
        const int64_t t = engine_.sampleTime();
        if (rateSampleTime_ > 0 && t > rateSampleTime_) actualRate_ = static_cast<double>(t - rateSampleTime_) / wall;
        rateSampleTime_ = t;
        rateWallTime_ = now;
    }
    flushSessionLog();
}

void Controller::stopRecordings() {
    Command c;
    c.address = "/rec_stop";
    c.client = kNoClient;
    c.body = cmd::DetachRecorder{-1};
    engine_.pushCommand(std::move(c));
}

// ---------------------------------------------------------------------------------------------
// Server commands

void Controller::hStatus(Msg& m) {
    const EngineStats s = engine_.stats(true); // peaks since the last /status
    const double sr = engine_.config().sampleRate;
    osc::MessageBuilder r("/status.reply");
    r.i(1).i(0).i(s.numNodes - s.numGroups).i(s.numGroups).i(0);
    r.f(static_cast<float>(s.cpuAverage)).f(static_cast<float>(s.cpuPeak));
    r.d(sr).d(options_.offline ? sr : actualRate_);
    r.i(engine_.config().blockSize).i(static_cast<int32_t>(s.xruns)).i(static_cast<int32_t>(s.lateCommands));
    r.i(static_cast<int32_t>(s.droppedCommands));
    r.f(static_cast<float>(s.bpm)).d(s.beats);
    r.i(s.numBuffers).i(options_.periodFrames).i(static_cast<int32_t>(s.droppedReplies));
    r.i(recorder_.active()).d(static_cast<double>(s.sampleTime)).s(options_.driverName);
    r.i(static_cast<int32_t>(s.stretchUnderruns));
    r.f(static_cast<float>(static_cast<double>(budget_.used()) / 1048576.0));
    r.f(static_cast<float>(static_cast<double>(budget_.limit()) / 1048576.0));
    r.i(stretchWorker_ ? stretchWorker_->shedVoices() : 0);
    r.i(static_cast<int32_t>(s.overBudgetBlocks));
    r.i(engine_.clockPeers());
    send(m.client, r);
}

void Controller::hVersion(Msg& m) {
    send(m.client, osc::MessageBuilder("/version.reply").s("loopd").i(kVersionMajor).i(kVersionMinor)
                       .s(std::string(".") + std::to_string(kVersionPatch)).s("main").s(kGitCommit));
}

void Controller::hNotify(Msg& m) {
    // As scsynth: a registered client gets a client id of its own (0 .. maxLogins-1; the one it
    // asks for when that is free), answered as `/done /notify clientID maxLogins`; registering
    // twice answers `/fail /notify "already registered" clientID` (sclang reads the id from it).
    const int32_t on = m.args.int32("flag");
    const int32_t wanted = m.args.atEnd() ? -1 : m.args.int32("client id");
    m.args.expectEnd();
    int32_t id = -1;
    bool already = false;
    {
        std::lock_guard<std::mutex> lock(clientsMutex_);
        for (int32_t k = 0; k < kMaxLogins; ++k)
            if (loginOf_[static_cast<size_t>(k)] == m.client) id = k;
        if (!on) {
            if (id < 0) throw osc::ArgError("not registered");
            loginOf_[static_cast<size_t>(id)] = kNoClient;
            notify_.erase(std::remove(notify_.begin(), notify_.end(), m.client), notify_.end());
        } else if (id >= 0) {
            already = true;
        } else {
            if (wanted >= 0 && wanted < kMaxLogins && loginOf_[static_cast<size_t>(wanted)] == kNoClient) id = wanted;
            for (int32_t k = 0; id < 0 && k < kMaxLogins; ++k)
                if (loginOf_[static_cast<size_t>(k)] == kNoClient) id = k;
            if (id < 0) throw osc::ArgError("too many users (" + std::to_string(kMaxLogins) + " clients are registered)");
            loginOf_[static_cast<size_t>(id)] = m.client;
            notify_.push_back(m.client);
        }
    }
    if (already) {
        send(m.client, osc::MessageBuilder("/fail").s("/notify").s("already registered").i(id));
        return;
    }
    send(m.client, osc::MessageBuilder("/done").s("/notify").i(id).i(kMaxLogins));
}

void Controller::hDumpOsc(Msg& m) {
    dumpOsc_ = m.args.int32("flag") != 0;
    spdlog::info("dumpOSC {}", dumpOsc_ ? "on" : "off");
}

void Controller::hQuit(Msg& m) {
    done(m.client, m.address);
    quit_ = true;
}

void Controller::hSync(Msg& m) {
    const int32_t id = m.args.int32("id");
    const uint16_t client = m.client;
    // Through the worker, so that it follows every earlier asynchronous command.
    worker_.post([this, client, id] { pushFromWorker(client, "/sync", 0, cmd::Sync{id}); });
}

// ---------------------------------------------------------------------------------------------
// Nodes as the modules build them, and what the engine gives back

void Controller::takeBack(Released& x) {
    // Everything the audio thread is done with comes back here, by one lane (see Released).
    switch (x.what) {
    case Released::What::Node: disposeNode(static_cast<Node*>(x.ptr)); break;
    case Released::What::Buffer: delete static_cast<BufferData*>(x.ptr); break;
    case Released::What::LoopBuffer:
    case Released::What::LoopSave:
        for (auto& mod : modules_)
            if (mod->takeBack(x)) return;
        delete static_cast<BufferData*>(x.ptr); // a module's loan nobody claims (none today)
        break;
    case Released::What::Voice: {
        auto* v = static_cast<StretchVoice*>(x.ptr);
        if (stretchWorker_) stretchWorker_->remove(v);
        delete v;
        break;
    }
    case Released::What::Recording: {
        const uint16_t client = x.client;
        recorder_.finish(static_cast<RecordSlot*>(x.ptr), [this, client](RecordSlot& s) {
            if (s.droppedFrames.load() > 0) spdlog::warn("recording {} lost {} frames (disk too slow)", s.path, s.droppedFrames.load());
            spdlog::info("recording {} closed: {} frames", s.path, s.writtenFrames.load());
            send(client, osc::MessageBuilder("/done").s("/rec_stop").i(s.id).s(s.path));
        });
        break;
    }
    case Released::What::Rejected: recorder_.discard(static_cast<RecordSlot*>(x.ptr)); break;
    case Released::What::MidiPads: Engine::freeReleased(x); break;
    }
}

void Controller::disposeNode(Node* n) {
    if (n)
        for (auto& mod : modules_) mod->onNodeDisposed(*n);
    if (StretchVoice* v = n ? n->stretchVoice() : nullptr; v && stretchWorker_) stretchWorker_->remove(v);
    delete n;
}

NodeSetup Controller::nodeSetup() {
    return NodeSetup{engine_.config(), paramCtx_, budget_, stretchWorker_, options_.loopSeconds, options_.undoSeconds, defaultStretch_};
}

// ---------------------------------------------------------------------------------------------
// Files: the path policy every command that reads or writes a file goes through.

std::string Controller::checkedPath(Msg&, const std::string& path, bool forWriting, PathPolicy::Kind kind) {
    const std::string why = paths_.check(path, forWriting, kind);
    if (!why.empty()) throw osc::ArgError(why);
    if (forWriting && options_.replay) {
        // A replay writes beside its output, never over the performance's own files: the path
        // flattened into one name (/home/me/take.wav -> replayFiles/home_me_take.wav).
        std::string flat;
        for (char ch : path) flat += ch == '/' ? '_' : ch;
        while (!flat.empty() && flat[0] == '_') flat.erase(0, 1);
        return options_.replayFiles + "/" + flat;
    }
    return path;
}

// ---------------------------------------------------------------------------------------------
// Recording

void Controller::hRecStart(Msg& m) {
    const std::string path = checkedPath(m, m.args.string("path"), true);
    const int32_t group = m.args.atEnd() ? 0 : m.args.int32("group id");
    m.args.expectEnd();
    soundFileFormat(path, "", "float"); // throws on an unknown extension
    const uint16_t client = m.client;
    const uint64_t tag = m.timetag;
    const int channels = engine_.config().numOutputs;
    worker_.post([=, this] {
        RecordSlot* slot = nullptr;
        try {
            slot = recorder_.open(path, group, channels, client);
        } catch (const std::exception& e) {
            fail(client, "/rec_start", e.what());
            return;
        }
        if (!pushFromWorker(client, "/rec_start", tag, cmd::AttachRecorder{slot, group})) recorder_.discard(slot);
    });
}

void Controller::hRecStop(Msg& m) {
    const int32_t id = m.args.atEnd() ? -1 : m.args.int32("recording id");
    m.args.expectEnd();
    push(m, cmd::DetachRecorder{id});
}

} // namespace loopd
