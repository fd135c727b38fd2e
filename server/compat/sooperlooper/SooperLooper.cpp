// SooperLooper's OSC namespace (SooperLooper's doc_osc; docs/OSC.md): /ping, /loop_add, /loop_del,
// /set, /get, /register*, /sl/#/{hit,down,up,forceup,set,get,register*,save_loop,load_loop},
// /save_session, /load_session. Loops are `looper` nodes in group 800 (head of the root), in
// loop-index order. Replies follow SooperLooper: gets answer `i:loop s:control f:value` (global
// ones `i:-2 ...`) at the return URL and path the client names; pings answer
// `s:hosturl s:version i:loopcount`. Unlike SooperLooper, anything wrong also answers /fail to the
// sender (and the error path, where the command has one); nothing is changed by a bad message.
#include <netdb.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "server/io/AudioFile.h"
#include "server/engine/BufferData.h"
#include "server/compat/sooperlooper/SooperLooper.h"
#include "server/control/ControlClock.h"

#include "server/tempo/TempoCommands.h"
#include "server/engine/Group.h"
#include "server/nodes/looper/Looper.h"
#include "server/engine/StretchWorker.h"
#include "server/app/Version.h"

namespace loopd {
namespace {
constexpr int32_t kLooperGroup = 800;
// Static addresses for commands the engine may fail later (Command::address must outlive them).
constexpr const char* kAddrHit = "/sl/#/hit";
constexpr const char* kAddrSet = "/sl/#/set";
constexpr const char* kAddrLoad = "/sl/#/load_loop";
constexpr const char* kAddrSave = "/sl/#/save_loop";
constexpr const char* kAddrLoopAdd = "/loop_add";
constexpr double kLongPressSeconds = 0.5; // SooperLooper's SUS: a long press releases on up

// Controls SooperLooper accepts that loopd stores and reports but that change no sound, with
// SooperLooper's defaults (its src/command_map.cpp).
struct StoredControl { const char* name; float value; };
const StoredControl kStoredOnly[] = {
    {"use_feedback_play", 0.0f}, {"redo_is_tap", 0.0f}, {"use_rate", 0.0f}, {"use_common_ins", 1.0f},
    {"use_common_outs", 1.0f}, {"use_safety_feedback", 1.0f}, {"pan_3", 0.5f}, {"pan_4", 0.5f}, {"pan3", 0.5f},
    {"pan4", 0.5f}, {"trigger_latency", 0.0f}, {"delay_trigger", 0.0f}, {"scratch_pos", 0.0f},
    {"replace_quantized", 0.0f}, {"discrete_prefader", 0.0f}, {"round_integer_tempo", 0.0f},
    {"jack_timebase_master", 0.0f}};
const StoredControl* storedControl(const std::string& name) {
    for (const auto& s : kStoredOnly) if (name == s.name) return &s;
    return nullptr;
}
bool storedOnly(const std::string& name) { return storedControl(name) != nullptr; }

// Read-only state controls.
const char* const kReadOnly[] = {"state", "next_state", "loop_len", "loop_pos", "cycle_len", "free_time",
                                 "total_time", "rate_output", "in_peak_meter", "out_peak_meter", "is_soloed",
                                 "waiting", "undo_depth", "redo_depth", "channel_count", "channels", "has_discrete_io"};
bool readOnly(const std::string& name) {
    for (const char* s : kReadOnly) if (name == s) return true;
    return false;
}

// Commands that toggle a mode: a long press (down ... up) releases it again (SUS).
bool sustainable(LoopCmd c) {
    switch (c) {
    case LoopCmd::Record: case LoopCmd::Overdub: case LoopCmd::Multiply: case LoopCmd::Insert:
    case LoopCmd::Replace: case LoopCmd::Substitute: case LoopCmd::Mute: case LoopCmd::Reverse:
        return true;
    default: return false;
    }
}
} // namespace

bool SooperLooper::isSustainable(LoopCmd c) { return sustainable(c); }

SooperLooper::SooperLooper(Controller& c, TempoCommands& tempo) : Module(c), tempo_(tempo) {
    std::random_device rd;
    while (slEngineId_ == 0) slEngineId_ = static_cast<int32_t>(rd() & 0x7fffffff);
    on("/ping", &SooperLooper::hSlPing);
    on("/loop_add", &SooperLooper::hSlLoopAdd);
    on("/loop_del", &SooperLooper::hSlLoopDel);
    on("/set", &SooperLooper::hSlGlobalSet);
    on("/get", &SooperLooper::hSlGlobalGet);
    on("/register", &SooperLooper::hSlRegister);
    on("/unregister", &SooperLooper::hSlUnregister);
    on("/register_update", &SooperLooper::hSlRegisterUpdate);
    on("/unregister_update", &SooperLooper::hSlRegisterUpdate);
    on("/register_auto_update", &SooperLooper::hSlRegisterUpdate);
    on("/unregister_auto_update", &SooperLooper::hSlRegisterUpdate);
    on("/get_all_midi_bindings", &SooperLooper::hSlMidiBindings);
    on("/add_midi_binding", &SooperLooper::hSlAddMidiBinding);
    on("/remove_midi_binding", &SooperLooper::hSlRemoveMidiBinding);
    on("/clear_midi_bindings", &SooperLooper::hSlClearMidiBindings);
    on("/load_midi_bindings", &SooperLooper::hSlLoadMidiBindings);
    on("/save_midi_bindings", &SooperLooper::hSlSaveMidiBindings);
    on("/learn_midi_binding", &SooperLooper::hSlLearnMidiBinding);
    on("/get_next_midi_event", &SooperLooper::hSlGetNextMidiEvent);
    on("/cancel_midi_learn", &SooperLooper::hSlCancelMidiLearn);
    on("/cancel_get_next_midi", &SooperLooper::hSlCancelGetNextMidi);
    on("/save_session", &SooperLooper::hSlSaveSession);
    on("/load_session", &SooperLooper::hSlLoadSession);
    onPrefix("/sl/", &SooperLooper::hSl); // /sl/<loop>/<verb>
}

// ---------------------------------------------------------------------------------------------
// Return addresses

std::optional<osc::Endpoint> SooperLooper::endpointForUrl(const std::string& url) {
    if (auto it = urlCache_.find(url); it != urlCache_.end()) return it->second;
    // osc.udp://host:port/ (SooperLooper's clients send liblo URLs; osc.tcp is answered over UDP).
    std::string rest = url;
    for (const char* scheme : {"osc.udp://", "osc.tcp://", "osc://"})
        if (rest.rfind(scheme, 0) == 0) { rest = rest.substr(std::strlen(scheme)); break; }
    const auto slash = rest.find('/');
    if (slash != std::string::npos) rest = rest.substr(0, slash);
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0) return std::nullopt;
    std::string host = rest.substr(0, colon);
    const std::string port = rest.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_family = AF_INET;
    addrinfo* res = nullptr;
    if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res) return std::nullopt;
    osc::Endpoint e;
    e.kind = osc::Endpoint::Kind::Udp;
    std::memcpy(&e.addr, res->ai_addr, res->ai_addrlen);
    e.addrLen = static_cast<socklen_t>(res->ai_addrlen);
    ::freeaddrinfo(res);
    if (urlCache_.size() > 256) urlCache_.clear();
    urlCache_[url] = e;
    return e;
}

void SooperLooper::sendToUrl(uint16_t client, const std::string& url, const osc::MessageBuilder& m) {
    replyTo(client, endpointForUrl(url), m); // no usable URL: answer the sender
}

void SooperLooper::replyTo(uint16_t client, const std::optional<osc::Endpoint>& to, const osc::MessageBuilder& m) {
    if (to) sendTo(*to, m);
    else send(client, m);
}

void SooperLooper::slError(Msg& m, const std::string& url, const std::string& path, const std::string& reason) {
    // SooperLooper's error message: s:engine_url s:message.
    if (!url.empty() && !path.empty()) sendToUrl(m.client, url, osc::MessageBuilder(path.c_str()).s(hostUrl()).s(reason));
    fail(m.client, m.address, reason);
}

// ---------------------------------------------------------------------------------------------
// Loops

std::vector<int> SooperLooper::slTargets(Msg& m, int index) {
    std::vector<int> out;
    if (index == -3) index = slSelected_;
    if (index == -1) {
        for (int i = 0; i < static_cast<int>(slLoops_.size()); ++i) out.push_back(i);
        return out;
    }
    if (index < 0 || index >= static_cast<int>(slLoops_.size()))
        throw osc::ArgError("loop index " + std::to_string(index) + " out of range (" + std::to_string(slLoops_.size()) +
                            (slLoops_.size() == 1 ? " loop)" : " loops)"));
    (void)m;
    out.push_back(index);
    return out;
}

void SooperLooper::ensureLooperGroup(Msg& m) {
    if (looperGroupCreated_) return;
    const EngineConfig& c = engine_.config();
    Msg now{m.address, m.args, 0, m.client};
    auto* group = new Group(kLooperGroup, c.numOutputs, c.blockSize);
    group->owner = Node::Owner::Looper;
    if (push(now, cmd::NewNode{group, AddAction::Head, 0})) looperGroupCreated_ = true;
}

int SooperLooper::addLoop(Msg& m, int channels, double seconds) {
    if (channels < 1 || channels > 2) throw osc::ArgError("a loop has 1 or 2 channels, got " + std::to_string(channels));
    if (!(seconds >= 0.0 && seconds <= 3600.0)) throw osc::ArgError("loop memory must be 0..3600 seconds");
    if (slLoops_.size() >= 64) throw osc::ArgError("too many loops (limit 64)");
    ensureLooperGroup(m);
    const EngineConfig& c = engine_.config();
    const double loopSeconds = seconds > 0.0 ? std::max(seconds, 1.0) : options_.loopSeconds;
    MemoryLease lease = budget().reserve(Looper::memoryBytes(channels, c.sampleRate, loopSeconds, options_.undoSeconds),
                                        "a loop of " + std::to_string(static_cast<int>(loopSeconds)) + " s (+" +
                                            std::to_string(static_cast<int>(options_.undoSeconds)) + " s undo)");
    const int32_t id = nextLoopNode_++;
    auto node = std::make_unique<Looper>(id, channels, c.sampleRate, loopSeconds, options_.undoSeconds);
    node->owner = Node::Owner::Looper;
    node->memoryLease = std::move(lease);
    Looper* raw = node.get();
    Msg now{kAddrLoopAdd, m.args, 0, m.client};
    if (!push(now, cmd::NewNode{node.release(), AddAction::Tail, kLooperGroup})) return -1;
    SlLoop loop;
    loop.node = id;
    loop.looper = raw;
    loop.channels = channels;
    loop.memorySeconds = loopSeconds;
    slLoops_.push_back(std::move(loop));
    // Controls as the client last set them (or defaults) go to the new loop too.
    const int index = static_cast<int>(slLoops_.size()) - 1;
    pushLoopGlobals(m);
    sendConfigUpdates();
    return index;
}

void SooperLooper::pushLoopGlobals(Msg& m) {
    cmd::LoopGlobals g{};
    g.syncSource = slSyncSource_;
    g.anchorId = slSyncSource_ > 0 && slSyncSource_ <= static_cast<int>(slLoops_.size()) ? slLoops_[static_cast<size_t>(slSyncSource_ - 1)].node : -1;
    g.eighthPerCycle = slEighthPerCycle_;
    g.lenienceSeconds = slLenience_;
    g.paMute = slPaMute_;
    Msg now{m.address, m.args, 0, m.client};
    push(now, g);
}

void SooperLooper::hSlLoopAdd(Msg& m) {
    const int channels = m.args.atEnd() ? 2 : m.args.int32("channel count");
    const double seconds = m.args.atEnd() ? 0.0 : m.args.number("minimum loop length in seconds");
    if (!m.args.atEnd()) m.args.int32("discrete io"); // accepted, as SooperLooper; loopd's io is the node tree
    const int index = addLoop(m, channels, seconds);
    if (index >= 0) done(m.client, "/loop_add", {index});
}

void SooperLooper::hSlLoopDel(Msg& m) {
    int index = m.args.atEnd() ? -1 : m.args.int32("loop index");
    if (slLoops_.empty()) throw osc::ArgError("there is no loop to remove");
    if (index == -1) index = static_cast<int>(slLoops_.size()) - 1;
    if (index < 0 || index >= static_cast<int>(slLoops_.size()))
        throw osc::ArgError("loop index " + std::to_string(index) + " out of range (" + std::to_string(slLoops_.size()) + " loops)");
    const int32_t node = slLoops_[static_cast<size_t>(index)].node;
    Msg now{m.address, m.args, 0, m.client};
    if (!push(now, cmd::Free{node, true})) return;
    slLoops_.erase(slLoops_.begin() + index);
    if (slSelected_ >= static_cast<int>(slLoops_.size())) slSelected_ = slLoops_.empty() ? 0 : static_cast<int>(slLoops_.size()) - 1;
    pushLoopGlobals(m);
    sendConfigUpdates();
    done(m.client, "/loop_del", {index});
}

void SooperLooper::attachShifter(Msg& m, SlLoop& loop) {
    // The first pitch_shift, stretch_ratio or tempo_stretch gives the loop a pitch shifter: a
    // Rubber Band R2 voice (SooperLooper's engine too), stepped by the stretch worker.
    const double sr = engine_.config().sampleRate;
    MemoryLease lease = budget().reserve(static_cast<int64_t>(8.0 * 1048576.0 * sr / 48000.0), "a pitch shifter for loop " + std::to_string(loop.node - 801));
    auto voice = std::make_unique<StretchVoice>(stretch::Stretcher::create(stretch::Method::Rb2, 2, sr, 4096, 1.0, 1.0));
    StretchVoice* raw = voice.get();
    if (stretchWorker()) stretchWorker()->add(raw);
    Msg now{kAddrSet, m.args, 0, m.client};
    if (!push(now, Looper::shifterFor(loop.node, raw))) {
        if (stretchWorker()) stretchWorker()->remove(raw);
        return;
    }
    voice.release();
    loop.shifter = true;
    loop.shifterMemory = std::move(lease);
}

void SooperLooper::onNodeCreated(Msg& m, Node& node) {
    // A looper made with /s_new joins the SooperLooper namespace as the next loop index.
    if (node.kind() != Node::Kind::Looper) return;
    SlLoop loop;
    loop.node = node.id();
    loop.looper = static_cast<Looper*>(&node);
    loop.memorySeconds = options_.loopSeconds;
    slLoops_.push_back(std::move(loop));
    pushLoopGlobals(m);
}

void SooperLooper::onNodeEnded(int32_t id) {
    if (id == kLooperGroup) looperGroupCreated_ = false; // freed: /loop_add makes it again
}

void SooperLooper::onBeat(const reply::Beat& b) {
    // SooperLooper tells clients registered for tap_tempo of every beat (slgui flashes its tap
    // button), with a value that differs each time.
    slNotifyChange(-2, "tap_tempo", static_cast<float>(b.beat));
}

Looper* SooperLooper::looperOfNode(int32_t node) const {
    for (const SlLoop& l : slLoops_)
        if (l.node == node) return l.looper;
    return nullptr;
}

int SooperLooper::indexOfNode(int32_t node) const {
    for (size_t i = 0; i < slLoops_.size(); ++i)
        if (slLoops_[i].node == node) return static_cast<int>(i);
    return -1;
}

bool SooperLooper::takeBack(Released& x) {
    if (x.what != Released::What::LoopBuffer && x.what != Released::What::LoopSave) return false;
    if (x.what == Released::What::LoopSave) {
        // Only its own copies: the jam saves the same loops (a looper runs two saves at once).
        auto it = slSaves_.find(x.id);
        if (it == slSaves_.end() || it->second.data != x.ptr) return false;
    }
    slLoopBuffer(static_cast<BufferData*>(x.ptr), x.id, x.what == Released::What::LoopSave);
    return true;
}

void SooperLooper::onNodeDisposed(const Node& gone) {
    if (gone.kind() != Node::Kind::Looper) return;
    // By object, not id: a looper refused for a duplicate id has the id of a live one.
    for (auto it = slLoops_.begin(); it != slLoops_.end(); ++it) {
        if (it->looper != &gone) continue;
        const int32_t node = it->node;
        slLoops_.erase(it);
        for (auto s = slSaves_.begin(); s != slSaves_.end();) s = s->first == node ? slSaves_.erase(s) : std::next(s);
        return;
    }
}

// ---------------------------------------------------------------------------------------------
// /sl/#/...

void SooperLooper::hSl(Msg& m) {
    // /sl/<index>/<verb>
    const std::string a = m.address;
    const auto second = a.find('/', 4);
    if (second == std::string::npos) throw osc::ArgError("unknown command " + a);
    int index = 0;
    const std::string number = a.substr(4, second - 4);
    try {
        size_t used = 0;
        index = std::stoi(number, &used);
        if (used != number.size()) throw std::invalid_argument("x");
    } catch (const std::exception&) {
        throw osc::ArgError("'" + number + "' is not a loop index in " + a);
    }
    const std::string verb = a.substr(second + 1);
    if (verb == "hit" || verb == "down" || verb == "up" || verb == "forceup" || verb == "upforce") slCommand(m, index, verb);
    else if (verb == "set") slSet(m, index);
    else if (verb == "get") slGet(m, index);
    else if (verb == "register_update" || verb == "unregister_update" || verb == "register_auto_update" || verb == "unregister_auto_update") {
        if (index != -2) slTargets(m, index); // validates
        slRegister(m, index, verb);
    } else if (verb == "save_loop") slSaveLoop(m, index);
    else if (verb == "load_loop") slLoadLoop(m, index);
    else throw osc::ArgError("unknown command " + a);
}

void SooperLooper::slCommand(Msg& m, int index, const std::string& verb) {
    const std::string name = m.args.string("command name");
    const bool isSolo = name == "solo";
    LoopCmd c = LoopCmd::Count;
    if (!isSolo && !loopCmdFromName(name.c_str(), c))
        throw osc::ArgError("unknown looper command '" + name + "'");
    float arg = 0.0f;
    if (!m.args.atEnd()) arg = m.args.number("command argument");
    m.args.expectEnd();
    if (c == LoopCmd::CaptureSeconds && !(arg > 0.0f)) throw osc::ArgError("capture_seconds needs a length in seconds > 0");
    if (c == LoopCmd::Capture && arg < 0.0f) throw osc::ArgError("capture needs a cycle count >= 1");
    const auto targets = slTargets(m, index);
    const double now = control_clock::steadySeconds();
    for (int i : targets) {
        SlLoop& loop = slLoops_[static_cast<size_t>(i)];
        const size_t key = isSolo ? static_cast<size_t>(LoopCmd::Count) : static_cast<size_t>(c);
        bool fire = true;
        if (verb == "down") {
            loop.downAt[key] = now;
            loop.held[key] = true;
        } else if (verb == "up" || verb == "forceup" || verb == "upforce") {
            const bool wasHeld = loop.held[key];
            loop.held[key] = false;
            const bool longPress = wasHeld && now - loop.downAt[key] >= kLongPressSeconds;
            fire = (isSolo || sustainable(c)) && (verb != "up" || longPress) && (wasHeld || verb != "up");
        }
        if (!fire) continue;
        if (isSolo) { slSolo(m, i); continue; }
        Msg timed{kAddrHit, m.args, m.timetag, m.client};
        push(timed, Looper::commandFor(loop.node, c, arg));
    }
}

void SooperLooper::slSolo(Msg& m, int index) {
    SlLoop& me = slLoops_[static_cast<size_t>(index)];
    me.soloed = !me.soloed;
    for (size_t j = 0; j < slLoops_.size(); ++j) {
        if (static_cast<int>(j) != index) slLoops_[j].soloed = false;
        const bool mute = me.soloed && static_cast<int>(j) != index;
        Msg timed{kAddrHit, m.args, m.timetag, m.client};
        push(timed, Looper::commandFor(slLoops_[j].node, mute ? LoopCmd::MuteOn : LoopCmd::MuteOff, 0.0f));
    }
}

float SooperLooper::slDefault(const std::string& name) const {
    if (const StoredControl* c = storedControl(name)) return c->value;
    if (name == "pitch_shift" || name == "tempo_stretch") return 0.0f;
    if (name == "stretch_ratio") return 1.0f;
    if (name == "dry" || name == "rec_thresh" || name == "playback_sync" || name == "relative_sync" ||
        name == "mute_quantized" || name == "overdub_quantized" || name == "in")
        return 0.0f;
    if (name == "fade_samples") return 256.0f;
    if (name == "pan_1" || name == "pan_2" || name == "pan1" || name == "pan2") return 0.5f;
    if (name == "input_latency" || name == "output_latency") return static_cast<float>(engine_.config().roundTripLatency) / 2.0f;
    return 1.0f; // feedback, wet, input_gain, rate, quantize (cycle), sync, round, autoset_latency
}

float SooperLooper::slValue(const SlLoop& loop, const std::string& name) const {
    const LooperStatus& s = loop.looper->status();
    if (name == "state") return static_cast<float>(s.state.load());
    if (name == "next_state") return static_cast<float>(s.nextState.load());
    if (name == "loop_len") return static_cast<float>(s.loopLenSeconds.load());
    if (name == "loop_pos") return static_cast<float>(s.loopPosSeconds.load());
    if (name == "cycle_len") return static_cast<float>(s.cycleLenSeconds.load());
    if (name == "free_time") return static_cast<float>(s.freeSeconds.load());
    if (name == "total_time") return static_cast<float>(s.totalSeconds.load());
    if (name == "rate_output") return s.rateOutput.load();
    if (name == "in_peak_meter") return loop.looper->status().inPeak.exchange(0.0f);
    if (name == "out_peak_meter") return loop.looper->status().outPeak.exchange(0.0f);
    if (name == "is_soloed") return loop.soloed ? 1.0f : 0.0f;
    if (name == "waiting") return s.nextState.load() >= 0 ? 1.0f : 0.0f;
    if (name == "undo_depth") return static_cast<float>(s.undoDepth.load());
    if (name == "channel_count" || name == "channels") return static_cast<float>(loop.channels);
    if (name == "has_discrete_io") return 0.0f;
    if (name == "redo_depth") return static_cast<float>(s.redoDepth.load());
    if (auto it = loop.controls.find(name); it != loop.controls.end()) return it->second;
    return slDefault(name);
}

void SooperLooper::slSet(Msg& m, int index) {
    const std::string name = m.args.string("control name");
    const float value = m.args.number("control value");
    m.args.expectEnd();
    if (index == -2) { slGlobalSet(m, name, value); return; }
    LoopCtl ctl = LoopCtl::Count;
    const bool known = loopCtlFromName(name.c_str(), ctl);
    if (!known && !storedOnly(name)) {
        if (readOnly(name)) throw osc::ArgError("'" + name + "' is read-only");
        throw osc::ArgError("unknown looper control '" + name + "'");
    }
    const auto targets = slTargets(m, index);
    for (int i : targets) {
        SlLoop& loop = slLoops_[static_cast<size_t>(i)];
        if (known) {
            if (Looper::needsShifter(ctl, value) && !loop.shifter) attachShifter(m, loop);
            Msg timed{kAddrSet, m.args, m.timetag, m.client};
            if (!push(timed, Looper::controlFor(loop.node, ctl, value))) return;
        }
        loop.controls[name] = value;
        slNotifyChange(i, name, value);
    }
}

void SooperLooper::slGet(Msg& m, int index) {
    const std::string name = m.args.string("control name");
    const std::string url = m.args.string("return url");
    const std::string path = m.args.string("return path");
    m.args.expectEnd();
    if (index == -2) { slGlobalGet(m, name, url, path); return; }
    LoopCtl ctl = LoopCtl::Count;
    if (!readOnly(name) && !loopCtlFromName(name.c_str(), ctl) && !storedOnly(name))
        throw osc::ArgError("unknown looper control '" + name + "'");
    for (int i : slTargets(m, index))
        sendToUrl(m.client, url, osc::MessageBuilder(path.c_str()).i(i).s(name).f(slValue(slLoops_[static_cast<size_t>(i)], name)));
}

// ---------------------------------------------------------------------------------------------
// Globals

float SooperLooper::slGlobalValue(const std::string& name) {
    if (name == "tempo") return static_cast<float>(engine_.stats().bpm);
    if (name == "eighth_per_cycle" || name == "eigth_per_cycle") return static_cast<float>(slEighthPerCycle_);
    if (name == "sync_source") return static_cast<float>(slSyncSource_);
    if (name == "selected_loop_num") return static_cast<float>(slSelected_);
    if (name == "pa_mute") return slPaMute_ ? 1.0f : 0.0f;
    if (name == "output_midi_clock") return slMidiClockOut_ ? 1.0f : 0.0f;
    if (name == "quantize_lenience") return static_cast<float>(slLenience_);
    if (name == "capture_seconds") return static_cast<float>(engine_.config().captureSeconds);
    if (name == "in_peak_meter") return engine_.takeInputPeak();
    if (name == "out_peak_meter") return engine_.takeOutputPeak();
    if (name == "global_cycle_len" || name == "global_cycle_pos") {
        // SooperLooper's cycle of the internal tempo: eighth_per_cycle eighth notes.
        const EngineStats st = engine_.stats();
        const double beatSeconds = 60.0 / std::max(1.0, st.bpm);
        const double cycleBeats = slEighthPerCycle_ / 2.0;
        if (name == "global_cycle_len") return static_cast<float>(cycleBeats * beatSeconds);
        return static_cast<float>(std::fmod(std::max(0.0, st.beats), cycleBeats) * beatSeconds);
    }
    if (name == "tap_tempo") return 0.0f; // a press, not a state (registered clients hear every beat)
    if (auto it = slGlobals_.find(name); it != slGlobals_.end()) return it->second;
    // SooperLooper's defaults for what loopd keeps but does not act on.
    if (name == "dry" || name == "wet" || name == "input_gain" || name == "auto_disable_latency" || name == "smart_eighths" ||
        name == "output_midi_clock" || name == "use_midi_start" || name == "use_midi_stop" || name == "send_midi_start_on_trigger")
        return 1.0f;
    if (name == "jack_timebase_master") return 0.0f;
    throw osc::ArgError("unknown global control '" + name + "'");
}

void SooperLooper::slGlobalSet(Msg& m, const std::string& name, float value) {
    if (name == "tempo") {
        tempo_.setTempo(m, value, "tempo");
    } else if (name == "eighth_per_cycle" || name == "eigth_per_cycle") {
        if (!(value >= 1.0f && value <= 1024.0f)) throw osc::ArgError("eighth_per_cycle must be 1..1024");
        slEighthPerCycle_ = value;
        pushLoopGlobals(m);
    } else if (name == "sync_source") {
        const int v = static_cast<int>(value);
        if (static_cast<float>(v) != value || v < -3 || v > static_cast<int>(slLoops_.size()))
            throw osc::ArgError("sync_source must be -3 (internal), -2 (midi), -1 (jack), 0 (none) or a loop number 1.." + std::to_string(slLoops_.size()));
        slSyncSource_ = v;
        pushLoopGlobals(m);
    } else if (name == "selected_loop_num") {
        const int v = static_cast<int>(value);
        if (static_cast<float>(v) != value || v < -1 || v >= static_cast<int>(std::max<size_t>(slLoops_.size(), 1)))
            throw osc::ArgError("selected_loop_num must be -1 (all) or 0.." + std::to_string(static_cast<int>(slLoops_.size()) - 1));
        slSelected_ = v;
    } else if (name == "select_next_loop" || name == "select_prev_loop" || name == "select_all_loops") {
        const int n = static_cast<int>(slLoops_.size());
        if (name == "select_all_loops") slSelected_ = -1;
        else if (n > 0) slSelected_ = ((slSelected_ < 0 ? 0 : slSelected_) + (name == "select_next_loop" ? 1 : n - 1)) % n;
    } else if (name == "output_midi_clock") {
        slMidiClockOut_ = value != 0.0f;
        push(m, cmd::MidiClockOut{slMidiClockOut_});
    } else if (name == "pa_mute") {
        slPaMute_ = value != 0.0f;
        pushLoopGlobals(m);
    } else if (name == "quantize_lenience") {
        if (!(value >= 0.0f && value <= 0.5f)) throw osc::ArgError("quantize_lenience must be 0..0.5 seconds");
        slLenience_ = value;
        pushLoopGlobals(m);
    } else if (name == "dry" || name == "wet" || name == "input_gain") {
        if (!(value >= 0.0f && value <= 4.0f)) throw osc::ArgError(name + " must be 0..4");
        slGlobals_[name] = value;
        LoopCtl ctl = LoopCtl::Count;
        loopCtlFromName(name.c_str(), ctl);
        for (const auto& loop : slLoops_) {
            Msg timed{kAddrSet, m.args, m.timetag, m.client};
            push(timed, Looper::controlFor(loop.node, ctl, value));
        }
    } else if (name == "tap_tempo") {
        tempo_.tap(m);
        return;
    } else if (name == "save_loop" || name == "auto_disable_latency" || name == "smart_eighths" ||
               name == "use_midi_start" || name == "use_midi_stop" || name == "send_midi_start_on_trigger" || name == "jack_timebase_master") {
        slGlobals_[name] = value; // accepted; no effect in loopd
    } else {
        throw osc::ArgError("unknown global control '" + name + "'");
    }
    slNotifyChange(-2, name, value);
}

void SooperLooper::slGlobalGet(Msg& m, const std::string& name, const std::string& url, const std::string& path) {
    const float v = slGlobalValue(name);
    sendToUrl(m.client, url, osc::MessageBuilder(path.c_str()).i(-2).s(name).f(v));
}

void SooperLooper::hSlGlobalSet(Msg& m) {
    const std::string name = m.args.string("control name");
    const float value = m.args.number("control value");
    m.args.expectEnd();
    slGlobalSet(m, name, value);
}

void SooperLooper::hSlGlobalGet(Msg& m) {
    const std::string name = m.args.string("control name");
    const std::string url = m.args.string("return url");
    const std::string path = m.args.string("return path");
    m.args.expectEnd();
    slGlobalGet(m, name, url, path);
}

std::string SooperLooper::bindingTargetProblem(const midi::Binding& b) {
    // SooperLooper's binding commands; `set` takes a loop or global control (also those loopd
    // stores without sound), the others a loop command (`scratch`, SooperLooper's, is kept and
    // does nothing here: a preset that binds it loads and saves unchanged).
    LoopCmd c;
    LoopCtl ctl;
    if (b.command == "set") {
        if (loopCtlFromName(b.control.c_str(), ctl) || storedOnly(b.control) || b.control == "tempo" || b.control == "tap_tempo" ||
            b.control == "eighth_per_cycle")
            return "";
        return "unknown control '" + b.control + "'";
    }
    if (b.command == "note" || b.command == "down" || b.command == "up" || b.command == "upforce" || b.command == "hit" || b.command == "susnote") {
        if (loopCmdFromName(b.control.c_str(), c) || b.control == "solo" || b.control == "scratch") return "";
        return "unknown looper command '" + b.control + "'";
    }
    return "unknown binding command '" + b.command + "' (note, down, up, upforce, hit, set, susnote)";
}

void SooperLooper::hSlPing(Msg& m) {
    // SooperLooper accepts `ss` and `ssi`; with the third argument (any value: slgui sends 1)
    // the answer carries the engine's id too (`ssii`), which slgui uses to notice a restart.
    const std::string url = m.args.string("return url");
    const std::string path = m.args.string("return path");
    const bool withId = !m.args.atEnd();
    if (withId) m.args.int32("id flag");
    m.args.expectEnd();
    sendToUrl(m.client, url, slPingReply(path, withId));
}

osc::MessageBuilder SooperLooper::slPingReply(const std::string& path, bool withId) const {
    const std::string version = std::to_string(kVersionMajor) + "." + std::to_string(kVersionMinor) + "." + std::to_string(kVersionPatch);
    osc::MessageBuilder r(path.c_str());
    r.s(hostUrl()).s(version).i(static_cast<int32_t>(slLoops_.size()));
    if (withId) r.i(slEngineId_);
    return r;
}

// ---------------------------------------------------------------------------------------------
// Registrations

void SooperLooper::hSlRegister(Msg& m) {
    const std::string url = m.args.string("return url");
    const std::string path = m.args.string("return path");
    m.args.expectEnd();
    slConfigListeners_.emplace_back(url, path);
}

void SooperLooper::hSlUnregister(Msg& m) {
    const std::string url = m.args.string("return url");
    const std::string path = m.args.string("return path");
    m.args.expectEnd();
    std::erase(slConfigListeners_, std::make_pair(url, path));
}

void SooperLooper::hSlRegisterUpdate(Msg& m) {
    // Global: /register_update etc.
    std::string verb = m.address;
    slRegister(m, -2, verb.substr(1));
}

void SooperLooper::slRegister(Msg& m, int index, const std::string& verb) {
    const std::string ctrl = m.args.string("control name");
    const bool autoUpdate = verb.find("auto") != std::string::npos;
    if (autoUpdate && verb.rfind("register", 0) == 0) m.args.int32("interval in ms"); // always 100 ms, as SooperLooper
    const std::string url = m.args.string("return url");
    const std::string path = m.args.string("return path");
    m.args.expectEnd();
    if (index == -2) slGlobalValue(ctrl); // throws on an unknown name
    else if (!readOnly(ctrl) && !storedOnly(ctrl)) {
        LoopCtl ctl = LoopCtl::Count;
        if (!loopCtlFromName(ctrl.c_str(), ctl)) throw osc::ArgError("unknown looper control '" + ctrl + "'");
    }
    const bool add = verb.rfind("register", 0) == 0;
    auto same = [&](const SlRegistration& r) { return r.loop == index && r.ctrl == ctrl && r.url == url && r.path == path && r.autoUpdate == autoUpdate; };
    std::erase_if(slRegistrations_, same);
    if (add) slRegistrations_.push_back(SlRegistration{index, ctrl, url, path, autoUpdate, std::nanf(""), m.client});
}

void SooperLooper::slNotifyChange(int index, const std::string& name, float value) {
    for (const auto& r : slRegistrations_) {
        if (r.autoUpdate || r.ctrl != name) continue;
        if (r.loop != index && !(r.loop == -1 && index >= 0)) continue;
        sendToUrl(r.client, r.url, osc::MessageBuilder(r.path.c_str()).i(index).s(name).f(value));
    }
}

void SooperLooper::sendConfigUpdates() {
    for (const auto& [url, path] : slConfigListeners_) sendToUrl(kNoClient, url, slPingReply(path, false));
}

int SooperLooper::pollWithinMs() const {
    // A loop at rest (off, paused) changes state only by a command or MIDI, which wake the
    // control thread; any other state can change on its own (a cycle ends): look every 5 ms.
    int within = -1;
    for (const SlLoop& loop : slLoops_) {
        const int state = loop.looper->status().state.load(std::memory_order_relaxed);
        if (state != static_cast<int>(LoopState::Off) && state != static_cast<int>(LoopState::Paused) && state != static_cast<int>(LoopState::Unknown)) {
            within = 5;
            break;
        }
    }
    for (const auto& r : slRegistrations_) {
        if (!r.autoUpdate) continue;
        const auto due = std::chrono::duration_cast<std::chrono::milliseconds>(slLastAuto_ + std::chrono::milliseconds(100) - std::chrono::steady_clock::now()).count();
        const int ms = static_cast<int>(std::clamp<int64_t>(due, 1, 100));
        within = within < 0 ? ms : std::min(within, ms);
        break;
    }
    return within;
}

void SooperLooper::poll() {
    // State changes go to /notify clients at once; auto-updates every 100 ms (SooperLooper's rate).
    bool stateChanged = false;
    for (size_t i = 0; i < slLoops_.size(); ++i) {
        SlLoop& loop = slLoops_[i];
        const int state = loop.looper->status().state.load(std::memory_order_relaxed);
        if (state != loop.lastState) {
            loop.lastState = state;
            broadcast(osc::MessageBuilder("/sl_state").i(static_cast<int32_t>(i)).i(state).i(loop.node));
            stateChanged = true;
        }
    }
    {
        std::lock_guard<std::mutex> lock(bindingsMutex_);
        if (bindingsVersion_ != feedbackVersion_) { stateChanged = true; feedbackVersion_ = bindingsVersion_; }
    }
    if (stateChanged) sendFeedback();
    compilePads();
    const auto now = std::chrono::steady_clock::now();
    if (now - slLastAuto_ < std::chrono::milliseconds(100)) return;
    slLastAuto_ = now;
    for (auto& r : slRegistrations_) {
        if (!r.autoUpdate) continue;
        std::vector<int> loops;
        if (r.loop == -2) loops.push_back(-2);
        else if (r.loop == -1) for (size_t i = 0; i < slLoops_.size(); ++i) loops.push_back(static_cast<int>(i));
        else if (r.loop >= 0 && r.loop < static_cast<int>(slLoops_.size())) loops.push_back(r.loop);
        for (int i : loops) {
            float v = 0.0f;
            try {
                v = i == -2 ? slGlobalValue(r.ctrl) : slValue(slLoops_[static_cast<size_t>(i)], r.ctrl);
            } catch (const std::exception&) { continue; }
            if (r.loop != -1 && v == r.last) continue;
            r.last = v;
            sendToUrl(r.client, r.url, osc::MessageBuilder(r.path.c_str()).i(i).s(r.ctrl).f(v));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files

void SooperLooper::slSaveLoop(Msg& m, int index) {
    const std::string file = m.args.string("file name");
    const std::string format = m.args.atEnd() ? "float" : m.args.string("format");
    if (!m.args.atEnd()) m.args.string("endian"); // libsndfile picks the file's native order
    const std::string url = m.args.atEnd() ? "" : m.args.string("return url");
    const std::string errPath = m.args.atEnd() ? "" : m.args.string("error path");
    m.args.expectEnd();
    std::string sample;
    if (format == "float") sample = "float";
    else if (format == "pcm16") sample = "int16";
    else if (format == "pcm24") sample = "int24";
    else if (format == "pcm32") sample = "int32";
    else { slError(m, url, errPath, "unknown loop file format '" + format + "' (float, pcm16, pcm24, pcm32)"); return; }
    std::string path;
    try {
        path = checkedPath(m, file, true);
    } catch (const osc::ArgError& e) { slError(m, url, errPath, e.what()); return; }
    const auto targets = slTargets(m, index);
    // Several loops (-1 all, -3 the selection when that is all): one file each, numbered as
    // SooperLooper numbers a session's loop files (take.wav -> take_loop_00.wav, ...); empty
    // loops are left out.
    int saved = 0;
    for (int i : targets) {
        SlLoop& loop = slLoops_[static_cast<size_t>(i)];
        std::string target = path;
        if (targets.size() > 1) {
            const std::filesystem::path p(path);
            char suffix[32];
            std::snprintf(suffix, sizeof suffix, "_loop_%02d", i);
            target = (p.parent_path() / (p.stem().string() + suffix + (p.has_extension() ? p.extension().string() : std::string(".wav")))).string();
            if (loop.looper->status().loopFrames.load() <= 0) continue;
        }
        const int64_t frames = loop.looper->status().loopFrames.load();
        if (frames <= 0) { slError(m, url, errPath, "loop " + std::to_string(i) + " is empty"); return; }
        if (slSaves_.count(loop.node)) { slError(m, url, errPath, "loop " + std::to_string(i) + " is already being saved"); return; }
        auto data = BufferData::zeros(frames, loop.channels, engine_.config().sampleRate, &budget(), "a copy of a loop to save");
        BufferData* raw = data.get();
        Msg now{kAddrSave, m.args, 0, m.client};
        if (!push(now, Looper::saveFor(loop.node, raw))) return;
        data.release();
        slSaves_[loop.node] = SlSave{target, sample, url, errPath, m.client, i, raw};
        ++saved;
    }
    if (saved == 0 && targets.size() > 1) slError(m, url, errPath, "every loop is empty: nothing to save");
}

void SooperLooper::slLoopBuffer(BufferData* buffer, int32_t nodeId, bool saved) {
    std::unique_ptr<BufferData> data(buffer);
    if (!saved) return; // loaded content the looper has copied
    auto it = slSaves_.find(nodeId);
    if (it == slSaves_.end()) return;
    SlSave save = it->second;
    slSaves_.erase(it);
    if (data->numFrames < 0) return; // the engine already answered /fail
    BufferData* raw = data.release();
    const std::optional<osc::Endpoint> errTo = save.url.empty() || save.errPath.empty() ? std::nullopt : endpointForUrl(save.url);
    worker_.post([this, raw, save, errTo] {
        std::unique_ptr<BufferData> owned(raw);
        try {
            writeAudioFile(save.path, *owned, 0, -1, "wav", save.sample);
            const std::string address = "/sl/" + std::to_string(save.index) + "/save_loop";
            send(save.client, osc::MessageBuilder("/done").s(address).i(save.index).s(save.path));
        } catch (const std::exception& e) {
            if (!save.url.empty() && !save.errPath.empty())
                replyTo(save.client, errTo, osc::MessageBuilder(save.errPath.c_str()).s(hostUrl()).s(e.what()));
            fail(save.client, ("/sl/" + std::to_string(save.index) + "/save_loop").c_str(), e.what());
        }
    });
}

void SooperLooper::slLoadLoop(Msg& m, int index) {
    const std::string file = m.args.string("file name");
    const std::string url = m.args.atEnd() ? "" : m.args.string("return url");
    const std::string errPath = m.args.atEnd() ? "" : m.args.string("error path");
    const bool quantized = !m.args.atEnd() && m.args.int32("swap at the next bar (0/1)") != 0;
    m.args.expectEnd();
    std::string path;
    try {
        path = checkedPath(m, file, false);
    } catch (const osc::ArgError& e) { slError(m, url, errPath, e.what()); return; }
    const auto targets = slTargets(m, index);
    LoadOptions o = loadOptions("a loop loaded from " + path);
    const uint16_t client = m.client;
    const uint64_t tag = m.timetag;
    const std::optional<osc::Endpoint> errTo = url.empty() || errPath.empty() ? std::nullopt : endpointForUrl(url);
    for (int i : targets) {
        const std::string address = "/sl/" + std::to_string(i) + "/load_loop";
        const int32_t node = slLoops_[static_cast<size_t>(i)].node;
        worker_.post([=, this] {
            try {
                auto data = loadAudioFile(path, o);
                BufferData* raw = data.get();
                if (pushFromWorker(client, kAddrLoad, tag, Looper::loadAtFor(node, raw, quantized ? Looper::LoadAt::Boundary : Looper::LoadAt::Now))) {
                    data.release();
                    send(client, osc::MessageBuilder("/done").s(address).i(i).s(path));
                }
            } catch (const std::exception& e) {
                if (!url.empty() && !errPath.empty()) replyTo(client, errTo, osc::MessageBuilder(errPath.c_str()).s(hostUrl()).s(e.what()));
                fail(client, address.c_str(), e.what());
            }
        });
    }
}

// Sessions: a JSON file with the globals and every loop's controls; each loop's audio is written
// next to it (`<session>.loop<N>.wav`) by save_loop and read back by load_loop.
void SooperLooper::hSlSaveSession(Msg& m) {
    const std::string file = m.args.string("file name");
    const std::string url = m.args.atEnd() ? "" : m.args.string("return url");
    const std::string errPath = m.args.atEnd() ? "" : m.args.string("error path");
    m.args.expectEnd();
    std::string path;
    try {
        path = checkedPath(m, file, true);
    } catch (const osc::ArgError& e) { slError(m, url, errPath, e.what()); return; }
    nlohmann::json j;
    j["loopd_session"] = 1;
    j["globals"] = {{"eighth_per_cycle", slEighthPerCycle_}, {"sync_source", slSyncSource_}, {"selected_loop_num", slSelected_},
                    {"pa_mute", slPaMute_}, {"quantize_lenience", slLenience_}, {"tempo", engine_.stats().bpm}};
    for (const auto& [k, v] : slGlobals_) j["globals"][k] = v;
    j["loops"] = nlohmann::json::array();
    for (size_t i = 0; i < slLoops_.size(); ++i) {
        const SlLoop& loop = slLoops_[i];
        nlohmann::json l;
        l["channels"] = loop.channels;
        l["memory_seconds"] = loop.memorySeconds;
        for (const auto& [k, v] : loop.controls) l["controls"][k] = v;
        const int64_t frames = loop.looper->status().loopFrames.load();
        if (frames > 0) l["audio"] = std::filesystem::path(path).filename().string() + ".loop" + std::to_string(i) + ".wav";
        // A paused or muted loop comes back paused or muted (anything else plays).
        const int state = loop.looper->status().state.load();
        if (state == static_cast<int>(LoopState::Paused)) l["state"] = "paused";
        else if (state == static_cast<int>(LoopState::Muted)) l["state"] = "muted";
        j["loops"].push_back(l);
    }
    {
        std::ofstream out(path);
        if (!out) { slError(m, url, errPath, "cannot write " + path); return; }
        out << j.dump(2) << "\n";
    }
    // The audio, through save_loop's own path (one copy per loop, on the audio thread's terms).
    for (size_t i = 0; i < slLoops_.size(); ++i) {
        SlLoop& loop = slLoops_[i];
        const int64_t frames = loop.looper->status().loopFrames.load();
        if (frames <= 0 || slSaves_.count(loop.node)) continue;
        auto data = BufferData::zeros(frames, loop.channels, engine_.config().sampleRate, &budget(), "a copy of a loop to save");
        BufferData* raw = data.get();
        Msg now{kAddrSave, m.args, 0, m.client};
        if (!push(now, Looper::saveFor(loop.node, raw))) continue;
        data.release();
        slSaves_[loop.node] = SlSave{path + ".loop" + std::to_string(i) + ".wav", "float", url, errPath, m.client, static_cast<int>(i), raw};
    }
    done(m.client, "/save_session");
}

void SooperLooper::hSlLoadSession(Msg& m) {
    const std::string file = m.args.string("file name");
    const std::string url = m.args.atEnd() ? "" : m.args.string("return url");
    const std::string errPath = m.args.atEnd() ? "" : m.args.string("error path");
    m.args.expectEnd();
    std::string path;
    nlohmann::json j;
    try {
        path = checkedPath(m, file, false);
        std::ifstream in(path);
        if (!in) throw osc::ArgError("file not found: " + path);
        j = nlohmann::json::parse(in);
        if (!j.contains("loops") || !j["loops"].is_array()) throw osc::ArgError("not a loopd session: " + path);
        for (const auto& l : j["loops"]) {
            const int ch = l.value("channels", 2);
            if (ch < 1 || ch > 2) throw osc::ArgError("session loop with " + std::to_string(ch) + " channels");
        }
    } catch (const osc::ArgError& e) { slError(m, url, errPath, e.what()); return; }
    catch (const std::exception& e) { slError(m, url, errPath, std::string("bad session file: ") + e.what()); return; }
    // Valid: replace the current loops.
    while (!slLoops_.empty()) {
        Msg now{m.address, m.args, 0, m.client};
        push(now, cmd::Free{slLoops_.back().node, true});
        slLoops_.pop_back();
    }
    const auto dir = std::filesystem::path(path).parent_path();
    for (const auto& l : j["loops"]) {
        const int index = addLoop(m, l.value("channels", 2), l.value("memory_seconds", 0.0));
        if (index < 0) continue;
        SlLoop& loop = slLoops_[static_cast<size_t>(index)];
        if (l.contains("controls"))
            for (const auto& [k, v] : l["controls"].items()) {
                LoopCtl ctl = LoopCtl::Count;
                const float value = v.get<float>();
                loop.controls[k] = value;
                if (loopCtlFromName(k.c_str(), ctl)) {
                    Msg now{kAddrSet, m.args, 0, m.client};
                    push(now, Looper::controlFor(loop.node, ctl, value));
                }
            }
        if (l.contains("audio")) {
            const std::string audio = (dir / l["audio"].get<std::string>()).string();
            LoadOptions o = loadOptions("a loop loaded from " + audio);
            const int32_t node = loop.node;
            const uint16_t client = m.client;
            const std::string state = l.value("state", "");
            worker_.post([=, this] {
                try {
                    auto data = loadAudioFile(audio, o);
                    if (pushFromWorker(client, kAddrLoad, 0, Looper::loadAtFor(node, data.get(), Looper::LoadAt::Now))) data.release();
                    // After the load (the same queue): back to the state it was saved in.
                    if (state == "paused") pushFromWorker(client, kAddrLoad, 0, Looper::commandFor(node, LoopCmd::PauseOn, 0.0f));
                    else if (state == "muted") pushFromWorker(client, kAddrLoad, 0, Looper::commandFor(node, LoopCmd::MuteOn, 0.0f));
                } catch (const std::exception& e) {
                    fail(client, "/load_session", e.what());
                }
            });
        }
    }
    if (j.contains("globals")) {
        const auto& g = j["globals"];
        slEighthPerCycle_ = g.value("eighth_per_cycle", slEighthPerCycle_);
        slSyncSource_ = std::clamp(g.value("sync_source", slSyncSource_), -3, static_cast<int>(slLoops_.size()));
        slSelected_ = std::clamp(g.value("selected_loop_num", slSelected_), -1, std::max(0, static_cast<int>(slLoops_.size()) - 1));
        slPaMute_ = g.value("pa_mute", slPaMute_);
        slLenience_ = std::clamp(g.value("quantize_lenience", slLenience_), 0.0, 0.5);
        pushLoopGlobals(m);
    }
    done(m.client, "/load_session");
}

} // namespace loopd
