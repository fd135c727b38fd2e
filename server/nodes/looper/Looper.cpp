// The looper node (Looper.h): its command and control names, construction and memory, parameters
// and controls, status, and the unit commands that reach it; the state machine, the heads and
// the jobs are in LooperCommands.cpp, LooperHeads.cpp and LooperJobs.cpp.
#include "server/nodes/looper/Looper.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dsp/Pan.h"
#include "server/engine/BufferData.h"
#include "server/rt/CaptureRing.h"

namespace loopd {
namespace {
constexpr const char* kCmdNames[] = {
    "record", "overdub", "multiply", "insert", "replace", "substitute", "reverse", "mute", "mute_on",
    "mute_off", "undo", "redo", "undo_all", "redo_all", "trigger", "oneshot", "pause", "pause_on",
    "pause_off", "capture", "capture_seconds", "clear"};
static_assert(sizeof(kCmdNames) / sizeof(kCmdNames[0]) == static_cast<size_t>(LoopCmd::Count));
constexpr const char* kCtlNames[] = {
    "rec_thresh", "feedback", "dry", "wet", "input_gain", "rate", "quantize", "sync", "playback_sync",
    "relative_sync", "round", "mute_quantized", "overdub_quantized", "fade_samples", "input_latency",
    "output_latency", "autoset_latency", "pan_1", "pan_2", "in", "pitch_shift", "stretch_ratio", "tempo_stretch"};
static_assert(sizeof(kCtlNames) / sizeof(kCtlNames[0]) == static_cast<size_t>(LoopCtl::Count));

int poolPagesFor(double sampleRate, double loopSeconds, double undoSeconds) noexcept {
    return static_cast<int>(((std::max(1.0, loopSeconds) + std::max(0.0, undoSeconds)) * sampleRate) / LoopMemory::kPageFrames) + 2;
}

} // namespace

const char* loopCmdName(LoopCmd c) noexcept {
    return c < LoopCmd::Count ? kCmdNames[static_cast<size_t>(c)] : nullptr;
}
bool loopCmdFromName(const char* name, LoopCmd& out) noexcept {
    for (size_t i = 0; i < static_cast<size_t>(LoopCmd::Count); ++i)
        if (std::strcmp(name, kCmdNames[i]) == 0) { out = static_cast<LoopCmd>(i); return true; }
    return false;
}
const char* loopCtlName(LoopCtl c) noexcept {
    return c < LoopCtl::Count ? kCtlNames[static_cast<size_t>(c)] : nullptr;
}
bool loopCtlFromName(const char* name, LoopCtl& out) noexcept {
    for (size_t i = 0; i < static_cast<size_t>(LoopCtl::Count); ++i)
        if (std::strcmp(name, kCtlNames[i]) == 0) { out = static_cast<LoopCtl>(i); return true; }
    // SooperLooper also spells the pans pan1/pan2.
    if (std::strcmp(name, "pan1") == 0) { out = LoopCtl::Pan1; return true; }
    if (std::strcmp(name, "pan2") == 0) { out = LoopCtl::Pan2; return true; }
    return false;
}

Looper::Looper(int32_t id, int channels, double sampleRate, double loopSeconds, double undoSeconds)
    : Node(id, Kind::Looper), channels_(std::clamp(channels, 1, 2)), sampleRate_(sampleRate),
      mem_(std::clamp(channels, 1, 2), static_cast<int64_t>(std::max(1.0, loopSeconds) * sampleRate),
           poolPagesFor(sampleRate, loopSeconds, undoSeconds)) {
    xfade_.assign(static_cast<size_t>(kMaxFade * channels_), 0.0f);
    shiftIn_.assign(static_cast<size_t>(2 * kShiftBlock), 0.0f);
    shiftOut_.assign(static_cast<size_t>(2 * kShiftBlock), 0.0f);
    scratchFade_.assign(static_cast<size_t>(kMaxFade * channels_), 0.0f);
    histPos_.assign(static_cast<size_t>(kHistory), 0);
    histMode_.assign(static_cast<size_t>(kHistory), 0);
    outGain_.reset(1.0f);
    wet_.reset(1.0f);
    dry_.reset(0.0f);
    inGain_.reset(1.0f);
}

int64_t Looper::memoryBytes(int channels, double sampleRate, double loopSeconds, double undoSeconds) noexcept {
    const int64_t ch = std::clamp(channels, 1, 2);
    const int64_t maxFrames = static_cast<int64_t>(std::max(1.0, loopSeconds) * sampleRate);
    const int64_t slots = maxFrames / LoopMemory::kPageFrames + 1;
    const int64_t pages = std::max<int64_t>(poolPagesFor(sampleRate, loopSeconds, undoSeconds), slots + 1);
    const int64_t pool = pages * LoopMemory::kPageFrames * ch * static_cast<int64_t>(sizeof(float));
    const int64_t tables = pages * 12 + slots * 28; // free list, entries, table/stamp/before
    const int64_t own = (2 * kMaxFade * ch) * static_cast<int64_t>(sizeof(float)) + kHistory * 9;
    return pool + tables + own;
}

Looper::~Looper() {
    // Buffers still held are owned here once the node is handed back to the control thread.
    for (auto& slot : handBack_) delete slot.data;
    delete leaked_;
    delete pendingLoad_;
    delete pendingMix_;
    delete take_.dst;
    delete copy_.buffer;
    for (SaveJob& save : saves_) delete save.dst;
}

// ---------------------------------------------------------------------------------------------
// Parameters (native /n_set: gain-like faders only; the looper's own controls go through /sl).

SetResult Looper::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                           const ProcessContext& ctx) noexcept {
    const int64_t ramp = rampFor(explicitRamp, rampSamples, ctx);
    switch (id) {
    case ParamId::Gain:
        return rampWithin(wet_, value, 0.0f, 64.0f, ramp, explicitRamp);
    case ParamId::In:
        if (explicitRamp) return SetResult::NotRampable;
        if (!(value >= 0.0f && value < static_cast<float>(std::max(ctx.numInputs, 1)))) return SetResult::BadValue;
        in_ = static_cast<int>(value);
        return SetResult::Ok;
    default: return Node::setParam(id, value, rampSamples, explicitRamp, ctx);
    }
}

bool Looper::getParam(ParamId id, float& value) const noexcept {
    switch (id) {
    case ParamId::Gain: value = wet_.target(); return true;
    case ParamId::In: value = static_cast<float>(in_); return true;
    default: return Node::getParam(id, value);
    }
}

bool Looper::setControl(LoopCtl c, float v, const ProcessContext& ctx) noexcept {
    if (!std::isfinite(v)) return false;
    const auto smooth = ctx.smoothSamples;
    switch (c) {
    case LoopCtl::RecThresh: if (v < 0 || v > 1) return false; recThresh_ = v; return true;
    case LoopCtl::Feedback: if (v < 0 || v > 1) return false; feedback_ = v; return true;
    case LoopCtl::Dry: if (v < 0 || v > 4) return false; dry_.setTarget(v, smooth); return true;
    case LoopCtl::Wet: if (v < 0 || v > 4) return false; wet_.setTarget(v, smooth); return true;
    case LoopCtl::InputGain: if (v < 0 || v > 4) return false; inGain_.setTarget(v, smooth); return true;
    case LoopCtl::Rate: if (v < 0.25f || v > 4.0f) return false; rate_ = v; return true;
    case LoopCtl::PitchShift: if (v < -24.0f || v > 24.0f) return false; pitchShift_ = v; return true;
    case LoopCtl::StretchRatio: if (v < 0.5f || v > 4.0f) return false; stretchRatio_ = v; return true;
    case LoopCtl::TempoStretch: tempoStretch_ = v != 0; return true;
    case LoopCtl::Quantize: if (v < 0 || v > 4) return false; quantize_ = static_cast<int>(v); return true;
    case LoopCtl::Sync: sync_ = v != 0; return true;
    case LoopCtl::PlaybackSync: playbackSync_ = v != 0; return true;
    case LoopCtl::RelativeSync: relativeSync_ = v != 0; return true;
    case LoopCtl::Round: round_ = v != 0; return true;
    case LoopCtl::MuteQuantized: muteQuantized_ = v != 0; return true;
    case LoopCtl::OverdubQuantized: overdubQuantized_ = v != 0; return true;
    case LoopCtl::FadeSamples: if (v < 0 || v > kMaxFade) return false; fadeSamples_ = static_cast<int>(v); return true;
    case LoopCtl::InputLatency: if (v < 0 || v > 8192) return false; inputLatency_ = static_cast<int64_t>(v); return true;
    case LoopCtl::OutputLatency: if (v < 0 || v > 8192) return false; outputLatency_ = static_cast<int64_t>(v); return true;
    case LoopCtl::AutosetLatency: autosetLatency_ = v != 0; return true;
    case LoopCtl::Pan1: if (v < 0 || v > 1) return false; pan_[0] = v; return true;
    case LoopCtl::Pan2: if (v < 0 || v > 1) return false; pan_[1] = v; return true;
    case LoopCtl::In:
        if (!(v >= 0.0f && v < static_cast<float>(std::max(ctx.numInputs, 1)))) return false;
        in_ = static_cast<int>(v);
        return true;
    case LoopCtl::Count: break;
    }
    return false;
}

int64_t Looper::latency(const ProcessContext& ctx) const noexcept {
    const int64_t d = autosetLatency_ ? ctx.loopers.sync.roundTripFrames : inputLatency_ + outputLatency_;
    return std::clamp<int64_t>(d, 0, kHistory / 2);
}

bool Looper::writing() const noexcept { return mode_ != WriteMode::None && !waitThreshold_; }

// ---------------------------------------------------------------------------------------------
// Quantization

// ---------------------------------------------------------------------------------------------
// Commands

// ---------------------------------------------------------------------------------------------
// Reading

// ---------------------------------------------------------------------------------------------
// Rendering

LoopState Looper::currentState() const noexcept {
    if (waitThreshold_) return LoopState::WaitStart;
    if (pending_.active && pending_.cmd == LoopCmd::Record && mode_ != WriteMode::Record) return LoopState::WaitStart;
    if (mode_ == WriteMode::Record) return stopAt_ >= 0 ? LoopState::WaitStop : LoopState::Recording;
    if (playLen_ <= 0) return LoopState::Off;
    if (paused_) return LoopState::Paused;
    switch (mode_) {
    case WriteMode::Overdub: return LoopState::Overdubbing;
    case WriteMode::Replace: return substitute_ ? LoopState::Substitute : LoopState::Replacing;
    case WriteMode::Multiply: return LoopState::Multiplying;
    case WriteMode::Insert: return LoopState::Inserting;
    default: break;
    }
    if (muted_) return LoopState::Muted;
    if (oneShot_) return LoopState::OneShot;
    return LoopState::Playing;
}

void Looper::publish(ProcessContext& ctx) noexcept {
    const auto sr = sampleRate_;
    status_.state.store(static_cast<int>(currentState()), std::memory_order_relaxed);
    int upcoming = -1;
    if (pending_.active) {
        switch (pending_.cmd) {
        case LoopCmd::Record: upcoming = static_cast<int>(mode_ == WriteMode::Record ? LoopState::Playing : LoopState::Recording); break;
        case LoopCmd::Overdub: upcoming = static_cast<int>(LoopState::Overdubbing); break;
        case LoopCmd::Multiply: upcoming = static_cast<int>(LoopState::Multiplying); break;
        case LoopCmd::Insert: upcoming = static_cast<int>(LoopState::Inserting); break;
        case LoopCmd::Replace: upcoming = static_cast<int>(LoopState::Replacing); break;
        case LoopCmd::Substitute: upcoming = static_cast<int>(LoopState::Substitute); break;
        case LoopCmd::OneShot: upcoming = static_cast<int>(LoopState::OneShot); break;
        default: upcoming = static_cast<int>(LoopState::Playing); break;
        }
    } else if (stopAt_ >= 0) {
        upcoming = static_cast<int>(LoopState::Playing);
    }
    status_.nextState.store(upcoming, std::memory_order_relaxed);
    const int64_t len = mode_ == WriteMode::Record ? histEnd_ - recordStart_ : playLen_;
    status_.loopFrames.store(len, std::memory_order_relaxed);
    status_.cycleFrames.store(mode_ == WriteMode::Record ? len : cycleFrames_, std::memory_order_relaxed);
    status_.loopLenSeconds.store(static_cast<double>(len) / sr, std::memory_order_relaxed);
    status_.loopPosSeconds.store((mode_ == WriteMode::Record ? static_cast<double>(len) : pos_) / sr, std::memory_order_relaxed);
    status_.cycleLenSeconds.store(static_cast<double>(mode_ == WriteMode::Record ? len : cycleFrames_) / sr, std::memory_order_relaxed);
    // As SooperLooper reports them: total = the longest loop, free = what a recording could
    // still take (never more than total; undo history uses the same pages).
    status_.freeSeconds.store(static_cast<double>(std::min(mem_.freeFrames(), mem_.maxFrames())) / sr, std::memory_order_relaxed);
    status_.totalSeconds.store(static_cast<double>(mem_.maxFrames()) / sr, std::memory_order_relaxed);
    status_.rateOutput.store(static_cast<float>(speed_) * static_cast<float>(dir_), std::memory_order_relaxed);
    status_.undoDepth.store(mem_.undoDepth(), std::memory_order_relaxed);
    status_.redoDepth.store(mem_.redoDepth(), std::memory_order_relaxed);
    // Peaks: the control thread takes the maximum since its last read.
    if (inPeak_ > status_.inPeak.load(std::memory_order_relaxed)) status_.inPeak.store(inPeak_, std::memory_order_relaxed);
    if (outPeak_ > status_.outPeak.load(std::memory_order_relaxed)) status_.outPeak.store(outPeak_, std::memory_order_relaxed);
    inPeak_ = outPeak_ = 0.0f;
    // The anchor tells the others where its cycles are.
    if (ctx.loopers.sync.anchorId == id()) {
        if (playLen_ > 0 && cycleFrames_ > 0 && mode_ != WriteMode::Record && mode_ != WriteMode::Multiply && mode_ != WriteMode::Insert) {
            ctx.loopers.sync.cycleFrames = cycleFrames_;
            const double inCycle = std::fmod(dir_ > 0 ? pos_ : static_cast<double>(playLen_) - pos_, static_cast<double>(cycleFrames_));
            ctx.loopers.sync.cycleOrigin = histEnd_ - static_cast<int64_t>(std::llround(inCycle / std::max(0.125, speed_)));
            ctx.loopers.sync.cycleStamp = ctx.blockStartSample;
        } else if (mode_ != WriteMode::Multiply && mode_ != WriteMode::Insert) {
            ctx.loopers.sync.cycleStamp = -1;
        }
    }
}

bool Looper::unitCommand(cmd::Unit& m, ProcessContext& ctx, int64_t now, UnitFail& fail) noexcept {
    switch (static_cast<Op>(m.op)) {
    case Op::Command:
        command(static_cast<LoopCmd>(static_cast<int>(m.a)), m.b, ctx, now);
        return true;
    case Op::Control:
        if (setControl(static_cast<LoopCtl>(static_cast<int>(m.a)), m.b, ctx)) return true;
        fail = UnitFail{FailCode::LoopValueOutOfRange, static_cast<int32_t>(m.a), m.b};
        return false;
    case Op::Load:
        m.buffer = loadContent(m.buffer, static_cast<LoadAt>(static_cast<int>(m.a)), ctx, now); // what it is done with goes back
        return true;
    case Op::Mix:
        if (pendingMix_ || len() <= 0 || !m.buffer) { fail = UnitFail{FailCode::LoopBusy}; return false; }
        pendingMix_ = m.buffer;
        m.buffer = nullptr; // lent until mixed in (handBack)
        return true;
    case Op::Take: {
        if (take_.dst || len() <= 0 || lastWrap_ < 0 || !m.buffer || !ctxRing_) { fail = UnitFail{FailCode::LoopBusy}; return false; }
        take_ = TakeJob{m.buffer, lastWrap_ - static_cast<int64_t>(m.a) * len() + latency(ctx), std::min(m.buffer->numFrames, len()), 0};
        take_.dst->numFrames = take_.frames;
        m.buffer = nullptr; // lent until copied (handBack)
        return true;
    }
    case Op::Save:
        if (!startSave(m.buffer)) { fail = UnitFail{FailCode::LoopBusy}; return false; }
        m.buffer = nullptr; // lent until the copy is done (handBack)
        return true;
    case Op::Shifter:
        m.voice = attachShifter(m.voice);
        return true;
    }
    fail = UnitFail{FailCode::WrongNodeKind, m.kind};
    return false;
}

} // namespace loopd
