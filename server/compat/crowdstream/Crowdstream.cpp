// The Crowdstream compatibility namespace (docs/OSC.md): the addresses and argument forms of the
// Python server loopd replaces, built on the node tree. Decks A-D are groups 901-904 inside a
// stem master group 900 (gain 0.8, the original's master volume), each with an eq3 node (911-914)
// at its tail; stems are players added at the head of their deck, so the EQ follows them.
// Every command answers /done or /fail; arguments are validated before anything is queued, so a
// bad message changes nothing.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>

#include "server/io/AudioFile.h"
#include "server/library/Sections.h"
#include "server/engine/BufferData.h"
#include "server/compat/crowdstream/Crowdstream.h"
#include "server/control/ControlClock.h"
#include "server/nodes/effects/Eq3Node.h"
#include "server/engine/Group.h"
#include "server/nodes/player/Player.h"

namespace loopd {
namespace {
constexpr int32_t kStemMasterGroup = 900;
constexpr int32_t kDeckGroup0 = 901;
constexpr int32_t kDeckEq0 = 911;
constexpr int32_t kDeckBase[4] = {100, 1100, 2100, 3100};
constexpr int32_t kToneNode = 1999999;
const char* const kDeckNames = "ABCD";

int deckOfBuffer(int32_t b) { return b >= 100 && b < 4100 ? (b - 100) / 1000 : -1; }

} // namespace

Crowdstream::Crowdstream(Controller& c) : Module(c) {
    on("/load_buffer", &Crowdstream::hLoadBuffer);
    on("/play_stem", &Crowdstream::hPlayStem);
    on("/stop_stem", &Crowdstream::hStopStem);
    on("/stem_volume", &Crowdstream::hStemVolume);
    on("/crossfade_levels", &Crowdstream::hCrossfadeLevels);
    on("/deck_levels", &Crowdstream::hDeckLevels);
    on("/deck_filter", &Crowdstream::hDeckFilter);
    on("/deck_eq", &Crowdstream::hDeckEq);
    on("/deck_eq_all", &Crowdstream::hDeckEqAll);
    on("/reset", &Crowdstream::hReset);
    on("/play", &Crowdstream::hPlay);
    on("/cue", &Crowdstream::hCue);
    on("/cue_section", &Crowdstream::hCueSection);
    on("/start_group", &Crowdstream::hStartGroup);
    on("/fade", &Crowdstream::hFade);
    on("/schedule_c_at", &Crowdstream::hScheduleCAt);
    on("/get_status", &Crowdstream::hGetStatus);
    on("/test_tone", &Crowdstream::hTestTone);
    on("/mixer_cleanup", &Crowdstream::hMixerCleanup);
}

// ---------------------------------------------------------------------------------------------
// Helpers

void Crowdstream::onNodeEnded(int32_t id) {
    for (auto it = stemNodes_.begin(); it != stemNodes_.end(); ++it)
        if (it->second == id) { stemNodes_.erase(it); break; }
    for (int32_t& a : armed_) if (a == id) a = -1;
}

uint64_t Crowdstream::baseTag(const Msg& m) const {
    if (m.timetag > 1) return m.timetag;
    if (options_.offline) {
        const double seconds = static_cast<double>(engine_.sampleTime()) / engine_.config().sampleRate;
        return static_cast<uint64_t>(std::llround(seconds * 4294967296.0));
    }
    return control_clock::ntp();
}

uint64_t Crowdstream::addSeconds(uint64_t tag, double seconds) {
    return tag + static_cast<uint64_t>(std::llround(std::max(0.0, seconds) * 4294967296.0));
}

int Crowdstream::deckIndex(osc::ArgReader& args) {
    std::string d;
    if (args.isNumber()) {
        const int32_t i = args.int32("deck");
        if (i < 0 || i > 3) throw osc::ArgError("unknown deck " + std::to_string(i) + " (A, B, C or D)");
        return i;
    }
    d = args.string("deck");
    if (d.size() == 1) {
        const char c = static_cast<char>(std::toupper(static_cast<unsigned char>(d[0])));
        if (c >= 'A' && c <= 'D') return c - 'A';
    }
    throw osc::ArgError("unknown deck '" + d + "' (A, B, C or D)");
}

float Crowdstream::cutOnlyGain(float percent) {
    // 0 = kill, (0, 50) = -24 dB .. 0 dB, 50 and above = flat (cut only).
    if (percent <= 0.0f) return 0.0f;
    if (percent >= 50.0f) return 1.0f;
    return std::pow(10.0f, (percent / 50.0f - 1.0f) * 24.0f / 20.0f);
}

void Crowdstream::ensureDecks(Msg& m) {
    if (decksCreated_) return;
    const EngineConfig& c = engine_.config();
    Msg now{m.address, m.args, 0, m.client};
    auto* master = new Group(kStemMasterGroup, c.numOutputs, c.blockSize);
    master->owner = Node::Owner::Decks;
    master->setParam(ParamId::Gain, options_.stemMasterGain, 0, false, paramCtx_);
    push(now, cmd::NewNode{master, AddAction::Tail, 0});
    for (int d = 0; d < 4; ++d) {
        auto* deck = new Group(kDeckGroup0 + d, c.numOutputs, c.blockSize);
        deck->owner = Node::Owner::Decks;
        deck->setParam(ParamId::Gain, deckLevels_[d], 0, false, paramCtx_);
        push(now, cmd::NewNode{deck, AddAction::Tail, kStemMasterGroup});
        auto* eq = new Eq3Node(kDeckEq0 + d, c.sampleRate, c.numOutputs, c.blockSize);
        eq->owner = Node::Owner::Decks;
        push(now, cmd::NewNode{eq, AddAction::Tail, kDeckGroup0 + d});
    }
    decksCreated_ = true;
}

void Crowdstream::startStem(Msg& m, int32_t b, float rate, float volume, bool loop, float startFrac, uint64_t at, bool hold,
                            float materialBpm) {
    const int deck = deckOfBuffer(b);
    ensureDecks(m);
    Msg timed{m.address, m.args, at, m.client};
    if (auto it = stemNodes_.find(b); it != stemNodes_.end()) push(timed, cmd::Free{it->second, true});
    const int32_t id = nextStemNode_++;
    auto p = std::make_unique<Player>(id);
    p->setParam(ParamId::Buf, static_cast<float>(b), 0, false, paramCtx_);
    p->setParam(ParamId::Rate, rate, 0, false, paramCtx_);
    p->setParam(ParamId::Gain, volume, 0, false, paramCtx_);
    p->setParam(ParamId::Loop, loop ? 1.0f : 0.0f, 0, false, paramCtx_);
    p->setParam(ParamId::StartFrac, startFrac, 0, false, paramCtx_);
    p->setParam(ParamId::Follow, options_.followTempo ? 1.0f : 0.0f, 0, false, paramCtx_);
    if (hold) p->setParam(ParamId::Hold, 1.0f, 0, false, paramCtx_);
    if (materialBpm > 0.0f) p->setParam(ParamId::Bpm, materialBpm, 0, false, paramCtx_);
    p->setParam(ParamId::Stretch, defaultStretch(), 0, false, paramCtx_);
    p->owner = Node::Owner::Decks;
    p->prepare(nodeSetup());
    if (push(timed, cmd::NewNode{p.release(), AddAction::Head, kDeckGroup0 + deck})) stemNodes_[b] = id;
    if (hold) armed_[deck] = id;
}

void Crowdstream::restoreDeckLevels(Msg& m, const float levels[4]) {
    for (int d = 0; d < 4; ++d) setDeckGain(m, d, levels[d]);
}

int32_t Crowdstream::restoreStem(Msg& m, int32_t buffer, float rate, float volume, bool loop, float startFrac, bool held) {
    if (deckOfBuffer(buffer) < 0) return -1;
    startStem(m, buffer, rate, volume, loop, startFrac, 0, held);
    const auto it = stemNodes_.find(buffer);
    return it == stemNodes_.end() ? -1 : it->second;
}

void Crowdstream::setDeckGain(Msg& m, int deck, float gain) {
    ensureDecks(m);
    deckLevels_[deck] = gain;
    cmd::SetParams s{};
    s.id = kDeckGroup0 + deck;
    s.count = 1;
    s.params[0] = {ParamId::Gain, gain};
    push(m, s);
}

void Crowdstream::setEqBand(Msg& m, int deck, int band, float gain) {
    ensureDecks(m);
    cmd::SetParams s{};
    s.id = kDeckEq0 + deck;
    s.count = 1;
    s.params[0] = {band == 0 ? ParamId::Low : band == 1 ? ParamId::Mid : ParamId::High, gain};
    push(m, s);
}

namespace {
float level(osc::ArgReader& a, const char* what) {
    const float v = a.number(what);
    if (v < 0.0f || v > 4.0f) throw osc::ArgError(std::string(what) + " must be 0..4, got " + std::to_string(v));
    return v;
}
float percent(osc::ArgReader& a, const char* what) {
    const float v = a.number(what);
    if (v < 0.0f || v > 100.0f) throw osc::ArgError(std::string(what) + " must be 0..100 percent, got " + std::to_string(v));
    return v;
}
int band(osc::ArgReader& a) {
    if (a.isNumber()) {
        const int32_t b = a.int32("band");
        if (b < 0 || b > 2) throw osc::ArgError("band out of range: " + std::to_string(b) + " (0 low, 1 mid, 2 high)");
        return b;
    }
    std::string s = a.string("band");
    std::transform(s.begin(), s.end(), s.begin(), ::tolower);
    if (s.rfind("lo", 0) == 0) return 0;
    if (s.rfind("mi", 0) == 0) return 1;
    if (s.rfind("hi", 0) == 0) return 2;
    throw osc::ArgError("band out of range: '" + s + "' (low, mid or high)");
}
int32_t deckBuffer(osc::ArgReader& a) {
    const int32_t b = a.int32("buffer id");
    if (deckOfBuffer(b) < 0)
        throw osc::ArgError("buffer id " + std::to_string(b) + " belongs to no deck (A 100-1099, B 1100-2099, C 2100-3099, D 3100-4099)");
    return b;
}
} // namespace

// ---------------------------------------------------------------------------------------------
// Stems

void Crowdstream::hLoadBuffer(Msg& m) {
    const int32_t b = bufnum(m);
    const std::string path = checkedPath(m, m.args.string("path"), false);
    if (!m.args.atEnd()) m.args.string("name");
    m.args.expectEnd();
    // Loading over a playing stem stops it, as the original did.
    if (auto it = stemNodes_.find(b); it != stemNodes_.end()) {
        push(m, cmd::Free{it->second, true});
        stemNodes_.erase(it);
    }
    loadBuffer(m, b, path, "/load_buffer");
}

void Crowdstream::hPlayStem(Msg& m) {
    const int32_t b = deckBuffer(m.args);
    const float rate = m.args.atEnd() ? 1.0f : m.args.number("rate");
    const float volume = m.args.atEnd() ? 0.8f : level(m.args, "volume");
    const int32_t loop = m.args.atEnd() ? 1 : m.args.int32("loop");
    const float start = m.args.atEnd() ? 0.0f : m.args.number("start fraction");
    m.args.expectEnd();
    if (!(rate >= 0.01f && rate <= 64.0f)) throw osc::ArgError("rate must be 0.01..64, got " + std::to_string(rate));
    if (!(start >= 0.0f && start < 1.0f)) throw osc::ArgError("start fraction must be 0..1, got " + std::to_string(start));
    if (!bufferKnown(b)) throw osc::ArgError("buffer " + std::to_string(b) + " is not loaded");
    startStem(m, b, rate, volume, loop != 0, start, m.timetag, false);
    done(m.client, m.address, {b});
}

void Crowdstream::hStopStem(Msg& m) {
    const int32_t b = deckBuffer(m.args);
    m.args.expectEnd();
    auto it = stemNodes_.find(b);
    if (it == stemNodes_.end()) throw osc::ArgError("stem " + std::to_string(b) + " is not playing");
    push(m, cmd::Free{it->second, true});
    stemNodes_.erase(it);
    done(m.client, m.address, {b});
}

void Crowdstream::hStemVolume(Msg& m) {
    const int32_t b = deckBuffer(m.args);
    const float v = level(m.args, "volume");
    m.args.expectEnd();
    auto it = stemNodes_.find(b);
    if (it == stemNodes_.end()) throw osc::ArgError("stem " + std::to_string(b) + " is not playing");
    cmd::SetParams s{};
    s.id = it->second;
    s.count = 1;
    s.params[0] = {ParamId::Gain, v};
    push(m, s);
    done(m.client, m.address, {b});
}

// ---------------------------------------------------------------------------------------------
// Deck faders and EQ

void Crowdstream::hCrossfadeLevels(Msg& m) {
    const float a = level(m.args, "deck A level");
    const float b = level(m.args, "deck B level");
    m.args.expectEnd();
    setDeckGain(m, 0, a);
    setDeckGain(m, 1, b);
    done(m.client, m.address);
}

void Crowdstream::hDeckLevels(Msg& m) {
    float v[4];
    int n = 0;
    static const char* names[] = {"deck A level", "deck B level", "deck C level", "deck D level"};
    while (!m.args.atEnd() && n < 4) { v[n] = level(m.args, names[n]); ++n; }
    m.args.expectEnd();
    for (int d = 0; d < n; ++d) setDeckGain(m, d, v[d]);
    done(m.client, m.address);
}

void Crowdstream::hDeckFilter(Msg& m) {
    const int d = deckIndex(m.args);
    const int b = band(m.args);
    const float g = level(m.args, "gain");
    m.args.expectEnd();
    setEqBand(m, d, b, g);
    done(m.client, m.address);
}

void Crowdstream::hDeckEq(Msg& m) {
    const int d = deckIndex(m.args);
    const int b = band(m.args);
    const float p = percent(m.args, "percent");
    m.args.expectEnd();
    setEqBand(m, d, b, cutOnlyGain(p));
    done(m.client, m.address);
}

void Crowdstream::hDeckEqAll(Msg& m) {
    const int d = deckIndex(m.args);
    const float lo = percent(m.args, "low percent");
    const float mid = percent(m.args, "mid percent");
    const float hi = percent(m.args, "high percent");
    m.args.expectEnd();
    ensureDecks(m);
    cmd::SetParams s{};
    s.id = kDeckEq0 + d;
    s.count = 3;
    s.params[0] = {ParamId::Low, cutOnlyGain(lo)};
    s.params[1] = {ParamId::Mid, cutOnlyGain(mid)};
    s.params[2] = {ParamId::High, cutOnlyGain(hi)};
    push(m, s);
    done(m.client, m.address);
}

// ---------------------------------------------------------------------------------------------
// Timed playlist control: start_at is seconds after the message (its timetag, or its arrival).

void Crowdstream::hReset(Msg& m) {
    m.args.expectEnd();
    t0Tag_ = baseTag(m);
    push(m, cmd::ClockReset{});
    done(m.client, m.address);
}

void Crowdstream::hPlay(Msg& m) {
    const int d = deckIndex(m.args);
    const std::string path = checkedPath(m, m.args.string("path"), false);
    const double at = seconds(m.args, "start_at");
    m.args.expectEnd();
    loadBuffer(m, kDeckBase[d], path, "/play");
    startStem(m, kDeckBase[d], 1.0f, 0.8f, true, 0.0f, addSeconds(baseTag(m), at), false);
}

void Crowdstream::hCue(Msg& m) {
    const int d = deckIndex(m.args);
    const std::string path = checkedPath(m, m.args.string("path"), false);
    const float start = m.args.atEnd() ? 0.0f : m.args.number("start fraction");
    m.args.expectEnd();
    if (!(start >= 0.0f && start < 1.0f)) throw osc::ArgError("start fraction must be 0..1, got " + std::to_string(start));
    loadBuffer(m, kDeckBase[d], path, "/cue");
    startStem(m, kDeckBase[d], 1.0f, 0.8f, true, start, 0, true);
}

void Crowdstream::hCueSection(Msg& m) {
    // "/cue_section deck structure.json [targetBpm [section]]": loopd sections' cut of one track,
    // stretched offline (Rubber Band R3) on the worker to the target tempo (default: the clock's
    // now), cued on the deck for /start_group; /done /cue_section <buffer> when it is ready.
    const int d = deckIndex(m.args);
    const std::string file = checkedPath(m, m.args.string("structure file"), false);
    double target = 0.0;
    if (!m.args.atEnd()) {
        target = m.args.number("target bpm");
        if (!(target >= 20.0 && target <= 999.0)) throw osc::ArgError("target bpm must be 20..999, got " + std::to_string(target));
    }
    int32_t section = 6;
    if (!m.args.atEnd()) {
        section = m.args.int32("section");
        if (section < 1 || section > 1000) throw osc::ArgError("section must be 1..1000, got " + std::to_string(section));
    }
    m.args.expectEnd();
    if (target == 0.0) target = engine_.stats().bpm;
    const int32_t b = kDeckBase[d];
    const LoadOptions lo = loadOptions(std::string("deck ") + kDeckNames[d] + "'s section");
    loadBufferWith(m, b, "/cue_section", [this, file, target, section, lo] {
        return sections::sectionBuffer(file, target, section, stretch::Method::Rb3, lo,
                                       [this](const std::string& p) { return pathProblem(p); });
    });
    startStem(m, b, 1.0f, 0.8f, true, 0.0f, 0, true, static_cast<float>(target));
}

void Crowdstream::hStartGroup(Msg& m) {
    // "/start_group start_at deck..." or "/start_group deck... start_at".
    double at = -1.0;
    int decks[4];
    int n = 0;
    while (!m.args.atEnd()) {
        if (m.args.isNumber()) {
            if (at >= 0.0) throw osc::ArgError("more than one start_at given");
            at = seconds(m.args, "start_at");
        } else {
            if (n == 4) throw osc::ArgError("more than four decks given");
            decks[n++] = deckIndex(m.args);
        }
    }
    if (at < 0.0) throw osc::ArgError("missing start_at");
    if (n == 0) throw osc::ArgError("no decks given");
    cmd::StartGroup g{};
    for (int i = 0; i < n; ++i) {
        if (armed_[decks[i]] < 0) throw osc::ArgError(std::string("deck ") + kDeckNames[decks[i]] + " is not cued");
        g.ids[g.count++] = armed_[decks[i]];
    }
    g.waitSeconds = 5.0; // as the original: wait for loading decks up to 5 s, then start anyway
    Msg timed{m.address, m.args, addSeconds(baseTag(m), at), m.client};
    if (push(timed, g))
        for (int i = 0; i < n; ++i) armed_[decks[i]] = -1;
}

void Crowdstream::hFade(Msg& m) {
    const int d = deckIndex(m.args);
    const double at = seconds(m.args, "start_at");
    const double dur = m.args.atEnd() ? 2.0 : seconds(m.args, "duration");
    m.args.expectEnd();
    ensureDecks(m);
    Msg timed{m.address, m.args, addSeconds(baseTag(m), at), m.client};
    push(timed, cmd::Ramp{kDeckGroup0 + d, ParamId::Gain, 0.0f, static_cast<float>(dur)});
    deckLevels_[d] = 0.0f;
    done(m.client, m.address);
}

void Crowdstream::hScheduleCAt(Msg& m) {
    const double x = seconds(m.args, "seconds since /reset");
    m.args.expectEnd();
    if (!bufferKnown(kDeckBase[2])) throw osc::ArgError("deck C (buffer 2100) is not loaded");
    if (t0Tag_ == 0) t0Tag_ = baseTag(m);
    startStem(m, kDeckBase[2], 1.0f, 0.8f, true, 0.0f, std::max(addSeconds(t0Tag_, x), baseTag(m)), false);
    done(m.client, m.address);
}

// ---------------------------------------------------------------------------------------------
// Status and utilities

void Crowdstream::hGetStatus(Msg& m) {
    m.args.expectEnd();
    const EngineStats s = engine_.stats();
    const double sr = engine_.config().sampleRate;
    spdlog::info("=== loopd (Crowdstream status) ===");
    spdlog::info("Sample Rate: {} Hz", sr);
    spdlog::info("Tempo: {:.1f} BPM", s.bpm);
    spdlog::info("Beat Position: {:.2f}", s.beats);
    spdlog::info("Buffers loaded: {}", s.numBuffers);
    spdlog::info("Active players: {}", stemNodes_.size());
    spdlog::info("Decks → A:{:.2f} B:{:.2f} C:{:.2f} D:{:.2f}", deckLevels_[0], deckLevels_[1], deckLevels_[2], deckLevels_[3]);
    send(m.client, osc::MessageBuilder("/get_status.reply").d(sr).f(static_cast<float>(s.bpm)).d(s.beats)
                       .i(s.numBuffers).i(static_cast<int32_t>(stemNodes_.size()))
                       .f(deckLevels_[0]).f(deckLevels_[1]).f(deckLevels_[2]).f(deckLevels_[3]));
}

void Crowdstream::hTestTone(Msg& m) {
    const float freq = m.args.atEnd() ? 440.0f : m.args.number("frequency");
    m.args.expectEnd();
    const double sr = engine_.config().sampleRate;
    if (!(freq >= 20.0f && static_cast<double>(freq) < sr / 2)) throw osc::ArgError("frequency must be 20 Hz .. " + std::to_string(static_cast<int>(sr / 2)) + " Hz");
    const int32_t b = engine_.config().maxBuffers - 1;
    const uint16_t client = m.client;
    const uint64_t now = baseTag(m);
    worker_.post([=, this] {
        // One second of sine whose period fits the loop exactly (the frequency is rounded to 1 Hz).
        const int frames = static_cast<int>(sr);
        const double f = std::max(1.0, std::round(static_cast<double>(freq)));
        auto data = BufferData::zeros(frames, 1, sr);
        for (int i = 0; i < frames; ++i) data->samples[static_cast<size_t>(i)] = static_cast<float>(0.25 * std::sin(2.0 * M_PI * f * i / sr));
        swapBuffer(kNoClient, "/test_tone", b, std::move(data));
        auto p = std::make_unique<Player>(kToneNode);
        p->setParam(ParamId::Buf, static_cast<float>(b), 0, false, paramCtx_);
        p->setParam(ParamId::Loop, 1.0f, 0, false, paramCtx_);
        pushFromWorker(kNoClient, "/test_tone", 0, cmd::Free{kToneNode});
        pushFromWorker(client, "/test_tone", 0, cmd::NewNode{p.release(), AddAction::Tail, 0});
        pushFromWorker(kNoClient, "/test_tone", addSeconds(now, 1.5), cmd::Free{kToneNode});
        done(client, "/test_tone");
    });
}

void Crowdstream::hMixerCleanup(Msg& m) {
    m.args.expectEnd();
    for (const auto& [b, id] : stemNodes_) push(m, cmd::Free{id, true});
    stemNodes_.clear();
    for (int32_t& a : armed_) {
        if (a >= 0) push(m, cmd::Free{a, true});
        a = -1;
    }
    freeBuffers(m.client, "/mixer_cleanup", [](int32_t b) { return deckOfBuffer(b) >= 0; });
}

} // namespace loopd
