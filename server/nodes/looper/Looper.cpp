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
// Frames a capture, load or insert copies per render: 128x real time at block 64, a small
// share of the block's budget (loopd_looper_bench editBlock/capture).
constexpr int64_t kCopyFramesPerBlock = 8192;

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
    delete copy_.buffer;
    delete save_.dst;
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
    case LoopCtl::Quantize: if (v < 0 || v > 3) return false; quantize_ = static_cast<int>(v); return true;
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
    const int64_t d = autosetLatency_ ? ctx.loop.roundTripFrames : inputLatency_ + outputLatency_;
    return std::clamp<int64_t>(d, 0, kHistory / 2);
}

bool Looper::writing() const noexcept { return mode_ != WriteMode::None && !waitThreshold_; }

// ---------------------------------------------------------------------------------------------
// Quantization

bool Looper::grid(const ProcessContext& ctx, int quantize, int64_t& origin, double& unit) const noexcept {
    if (quantize <= 0) return false;
    const auto& ls = ctx.loop;
    const bool anchored = sync_ && ls.syncSource > 0 && ls.anchorId != id() && ls.cycleValid(ctx) && ls.cycleFrames > 0;
    const bool clocked = sync_ && ls.syncSource < 0;
    if (anchored) {
        origin = ls.cycleOrigin;
        unit = static_cast<double>(ls.cycleFrames);
        if (quantize == 2) unit /= std::max(1.0, ls.eighthPerCycle);
        else if (quantize == 3 && mem_.length() > 0 && cycleFrames_ > 0) unit = static_cast<double>(mem_.length());
        return true;
    }
    if (clocked) {
        const double framesPerBeat = 60.0 * ctx.sampleRate / std::max(1.0, ctx.tempoBpm);
        origin = ctx.segmentStart - static_cast<int64_t>(std::llround(ctx.beats * framesPerBeat));
        unit = quantize == 2 ? framesPerBeat / 2.0 : framesPerBeat * std::max(1, ctx.beatsPerBar);
        return true;
    }
    // The loop's own cycle, when it has one.
    if (len() <= 0 || cycleFrames_ <= 0 || mode_ == WriteMode::Record) return false;
    const int64_t cycle = cycleFrames_;
    // histEnd_ is "now": the time of the next sample the play head renders.
    const double into = dir_ > 0 ? pos_ : static_cast<double>(len()) - pos_;
    origin = histEnd_ - static_cast<int64_t>(std::llround(std::fmod(into, static_cast<double>(cycle)) / std::max(0.125, speed_)));
    unit = static_cast<double>(cycle);
    if (quantize == 2) unit /= std::max(1.0, ls.eighthPerCycle);
    else if (quantize == 3) { unit = static_cast<double>(len()); origin = histEnd_ - static_cast<int64_t>(std::llround(into / std::max(0.125, speed_))); }
    return true;
}

int64_t Looper::boundaryFor(LoopCmd c, const ProcessContext& ctx, int64_t at, bool& retro) const noexcept {
    retro = false;
    bool quantized = false, mayRetro = false;
    switch (c) {
    case LoopCmd::Record:
        quantized = true;
        mayRetro = true;
        break;
    case LoopCmd::Multiply: case LoopCmd::Insert: case LoopCmd::Replace: case LoopCmd::Substitute:
        quantized = true;
        mayRetro = mode_ == WriteMode::None;
        break;
    case LoopCmd::Reverse:
        quantized = true;
        break;
    case LoopCmd::Trigger: case LoopCmd::OneShot: {
        // Restarting on the loop's own cycle would only ever restart it where it already is:
        // these wait for the anchor's cycle or the clock's bar, never for the loop itself.
        const auto& ls = ctx.loop;
        quantized = sync_ && ((ls.syncSource > 0 && ls.anchorId != id() && ls.cycleValid(ctx)) || ls.syncSource < 0);
        break;
    }
    case LoopCmd::Overdub:
        quantized = overdubQuantized_;
        mayRetro = mode_ == WriteMode::None;
        break;
    case LoopCmd::Mute: case LoopCmd::MuteOn: case LoopCmd::MuteOff:
        quantized = muteQuantized_;
        break;
    default: break;
    }
    if (!quantized) return at;
    // A recording's stop is placed by stopRecord (power-of-two multiples of the cycle).
    if (c == LoopCmd::Record && mode_ == WriteMode::Record) return at;
    int64_t origin = 0;
    double unit = 0.0;
    if (!grid(ctx, quantize_, origin, unit) || unit < 1.0) return at;
    const double k = std::floor(static_cast<double>(at - origin) / unit);
    const int64_t before = origin + static_cast<int64_t>(std::llround(k * unit));
    const int64_t after = origin + static_cast<int64_t>(std::llround((k + 1.0) * unit));
    if (before >= at) return at;
    if (mayRetro && at - before <= ctx.loop.lenienceFrames && at - before < kHistory / 2) {
        retro = true;
        return before;
    }
    return after;
}

// ---------------------------------------------------------------------------------------------
// Commands

void Looper::command(LoopCmd c, float arg, ProcessContext& ctx, int64_t at) noexcept {
    if (pending_.active && c == pending_.cmd && c != LoopCmd::Record) {
        pending_.active = false; // a second press cancels a waiting command
        return;
    }
    bool retro = false;
    const int64_t when = boundaryFor(c, ctx, at, retro);
    if (when > at) {
        pending_ = Pending{true, c, arg, when};
        return;
    }
    execute(c, arg, ctx, retro ? when : at, retro);
}

void Looper::cancelWrites(int64_t now) noexcept {
    // Whatever the write head has not written yet is abandoned (undo/redo/clear/capture/load).
    for (int64_t t = std::max(writeCursor_, histEnd_ - kHistory + 1); t < now && t < histEnd_; ++t)
        histMode_[static_cast<size_t>(t & (kHistory - 1))] = static_cast<uint8_t>(WriteMode::None);
    mode_ = WriteMode::None;
    writeMode_ = WriteMode::None;
    fadeOutLeft_ = 0;
    recordEndPending_ = false;
    stopAt_ = -1;
    waitThreshold_ = false;
    if (copy_.active) finishCopy();
}

void Looper::execute(LoopCmd c, float arg, ProcessContext& ctx, int64_t at, bool retro) noexcept {
    const int64_t now = ctx.blockStartSample; // history is complete up to here (exclusive) at most
    (void)now;
    switch (c) {
    case LoopCmd::Record:
        if (mode_ == WriteMode::Record) { stopRecord(ctx, at, retro); return; }
        if (waitThreshold_) { waitThreshold_ = false; return; }
        if (mode_ != WriteMode::None) stopWriteMode(ctx, at);
        if (recThresh_ > 0.0f && !retro) { waitThreshold_ = true; return; }
        startRecord(ctx, at);
        return;
    case LoopCmd::Overdub:
    case LoopCmd::Replace:
    case LoopCmd::Substitute: {
        const WriteMode want = c == LoopCmd::Overdub ? WriteMode::Overdub : WriteMode::Replace;
        if (mode_ == WriteMode::Record) { stopRecord(ctx, at, false); if (mode_ == WriteMode::Record) return; }
        if (mode_ == want && (want != WriteMode::Replace || substitute_ == (c == LoopCmd::Substitute))) {
            stopWriteMode(ctx, at);
            return;
        }
        if (len() <= 0) { status_.commandsIgnored.fetch_add(1, std::memory_order_relaxed); return; }
        if (mode_ != WriteMode::None) stopWriteMode(ctx, at);
        substitute_ = c == LoopCmd::Substitute;
        setMode(want, ctx, at);
        return;
    }
    case LoopCmd::Multiply:
        if (mode_ == WriteMode::Multiply) {
            // End on the next cycle boundary of the grown loop (SooperLooper's rounding).
            const int64_t cycle = std::max<int64_t>(1, cycleFrames_);
            const auto p = static_cast<int64_t>(pos_);
            const int64_t target = round_ ? ((p + cycle - 1) / cycle) * cycle : p;
            stopAt_ = at + std::max<int64_t>(0, target - p);
            if (stopAt_ == at) finishMultiply(ctx, at);
            return;
        }
        if (len() <= 0 || mode_ == WriteMode::Record) { status_.commandsIgnored.fetch_add(1, std::memory_order_relaxed); return; }
        if (mode_ != WriteMode::None) stopWriteMode(ctx, at);
        multiplyBase_ = len();
        setMode(WriteMode::Multiply, ctx, at);
        return;
    case LoopCmd::Insert:
        if (mode_ == WriteMode::Insert) {
            const int64_t cycle = std::max<int64_t>(1, cycleFrames_);
            const int64_t inserted = at - insertStart_;
            const int64_t target = round_ ? std::max<int64_t>(cycle, ((inserted + cycle - 1) / cycle) * cycle) : std::max<int64_t>(1, inserted);
            stopAt_ = insertStart_ + target;
            if (stopAt_ <= at) finishInsert(ctx, stopAt_);
            return;
        }
        if (len() <= 0 || mode_ == WriteMode::Record) { status_.commandsIgnored.fetch_add(1, std::memory_order_relaxed); return; }
        if (mode_ != WriteMode::None) stopWriteMode(ctx, at);
        multiplyBase_ = len();
        insertAt_ = std::clamp<int64_t>(static_cast<int64_t>(pos_), 0, len());
        insertStart_ = at;
        beginXfade(ctx);
        setMode(WriteMode::Insert, ctx, at);
        return;
    case LoopCmd::Reverse:
        if (len() <= 0) return;
        beginXfade(ctx);
        dir_ = -dir_;
        return;
    case LoopCmd::Mute:
    case LoopCmd::MuteOn:
    case LoopCmd::MuteOff: {
        const bool m = c == LoopCmd::Mute ? !muted_ : c == LoopCmd::MuteOn;
        if (m == muted_) return;
        muted_ = m;
        oneShot_ = false;
        outGain_.setTarget(muted_ || paused_ ? 0.0f : 1.0f, std::max(1, fadeSamples_));
        return;
    }
    case LoopCmd::Undo:
    case LoopCmd::Redo:
    case LoopCmd::UndoAll:
    case LoopCmd::RedoAll: {
        cancelWrites(at);
        beginXfade(ctx);
        bool changed = false;
        if (c == LoopCmd::Undo || c == LoopCmd::UndoAll) {
            if (mem_.openAndEmpty()) mem_.undo(); // a step that wrote nothing is not a level
            changed = c == LoopCmd::Undo ? mem_.undo() : mem_.undoAll() > 0;
        } else {
            changed = c == LoopCmd::Redo ? mem_.redo() : mem_.redoAll() > 0;
        }
        if (!changed) status_.commandsIgnored.fetch_add(1, std::memory_order_relaxed);
        syncLengthFromMemory();
        return;
    }
    case LoopCmd::Trigger:
    case LoopCmd::OneShot:
        if (len() <= 0) return;
        if (mode_ == WriteMode::Record) stopRecord(ctx, at, false);
        beginXfade(ctx);
        pos_ = dir_ > 0 ? 0.0 : static_cast<double>(len()) - 1.0;
        muted_ = false;
        paused_ = false;
        oneShot_ = c == LoopCmd::OneShot;
        outGain_.reset(1.0f);
        return;
    case LoopCmd::Pause:
    case LoopCmd::PauseOn:
    case LoopCmd::PauseOff: {
        const bool p = c == LoopCmd::Pause ? !paused_ : c == LoopCmd::PauseOn;
        if (p == paused_ || len() <= 0) return;
        if (mode_ != WriteMode::None && p) stopWriteMode(ctx, at);
        beginXfade(ctx);
        paused_ = p;
        return;
    }
    case LoopCmd::Capture:
    case LoopCmd::CaptureSeconds:
        capture(ctx, at, arg, c == LoopCmd::CaptureSeconds);
        return;
    case LoopCmd::Clear:
        cancelWrites(at);
        beginXfade(ctx);
        mem_.beginGeneration(true);
        syncLengthFromMemory();
        return;
    case LoopCmd::Count: break;
    }
}

void Looper::setMode(WriteMode m, ProcessContext& ctx, int64_t from) noexcept {
    (void)ctx;
    mode_ = m;
    if (m == WriteMode::None) return;
    // Retroactive start: rewrite the history from `from` and let the write head catch up.
    const int64_t oldest = histEnd_ - kHistory + 1;
    from = std::max(from, oldest);
    for (int64_t t = from; t < histEnd_; ++t) {
        const size_t i = static_cast<size_t>(t & (kHistory - 1));
        histMode_[i] = static_cast<uint8_t>(m);
        if (m == WriteMode::Record) histPos_[i] = t - recordStart_;
    }
    if (writeCursor_ > from) writeCursor_ = from;
}

void Looper::startRecord(ProcessContext& ctx, int64_t at) noexcept {
    if (len() > 0 && !paused_ && !muted_) beginXfade(ctx); // the old loop fades out
    pending_.active = false;
    recordStart_ = at;
    stopAt_ = -1;
    recordEndPending_ = false;
    playLen_ = 0;
    pos_ = 0.0;
    dir_ = 1;
    paused_ = false;
    oneShot_ = false;
    setMode(WriteMode::Record, ctx, at);
}

void Looper::stopRecord(ProcessContext& ctx, int64_t at, bool retro) noexcept {
    int64_t length = at - recordStart_;
    int64_t origin = 0;
    double unit = 0.0;
    const auto& ls = ctx.loop;
    const bool anchored = sync_ && ls.syncSource > 0 && ls.anchorId != id() && ls.cycleValid(ctx) && ls.cycleFrames > 0;
    const bool clocked = sync_ && ls.syncSource < 0 && quantize_ > 0;
    if ((anchored && quantize_ > 0) || clocked) {
        grid(ctx, 1, origin, unit);
        const double u = std::max(1.0, unit);
        double multiple = 1.0;
        if (anchored) {
            // A power-of-two multiple of the anchor's cycle.
            while (multiple * u < static_cast<double>(length - ls.lenienceFrames)) multiple *= 2.0;
        } else {
            multiple = std::max(1.0, std::ceil(static_cast<double>(length - ls.lenienceFrames) / u));
        }
        const auto target = static_cast<int64_t>(std::llround(multiple * u));
        if (target > length) {
            stopAt_ = recordStart_ + target; // WaitStop until then
            return;
        }
        length = target;
        retro = true;
    } else if (!retro) {
        length = std::max<int64_t>(length, 1);
    }
    finishRecord(ctx, recordStart_ + length, length, anchored ? ls.cycleFrames : length);
    (void)retro;
}

void Looper::finishRecord(ProcessContext& ctx, int64_t stopTime, int64_t length, int64_t cycle) noexcept {
    (void)ctx;
    length = std::clamp<int64_t>(length, 1, mem_.maxFrames());
    mode_ = WriteMode::None;
    stopAt_ = -1;
    playLen_ = length;
    cycleFrames_ = std::max<int64_t>(1, cycle);
    recordLength_ = length;
    recordEndTau_ = stopTime;
    recordEndPending_ = true;
    // Playback starts from silence at frame 0 at stopTime; if that lies in the past (a press
    // shortly after the boundary), the play head is already that far in.
    const int64_t elapsed = std::max<int64_t>(0, histEnd_ - stopTime);
    pos_ = static_cast<double>(elapsed % length);
    for (int64_t t = std::max(stopTime, histEnd_ - kHistory + 1); t < histEnd_; ++t) {
        const size_t i = static_cast<size_t>(t & (kHistory - 1));
        histMode_[i] = static_cast<uint8_t>(WriteMode::None);
        histPos_[i] = (t - stopTime) % length;
    }
    std::fill(xfade_.begin(), xfade_.end(), 0.0f);
    xfadeLen_ = std::max(1, std::min(fadeSamples_, kMaxFade));
    xfadePos_ = 0;
}

void Looper::finishMultiply(ProcessContext& ctx, int64_t at) noexcept {
    (void)at;
    (void)ctx;
    const auto p = static_cast<int64_t>(pos_);
    playLen_ = std::clamp<int64_t>(p, 1, mem_.maxFrames());
    mode_ = WriteMode::None;
    stopAt_ = -1;
    lengthChange_ = playLen_;
    lengthChangePending_ = true;
    lengthChangeTau_ = histEnd_;
    pos_ = 0.0;
}

void Looper::finishInsert(ProcessContext& ctx, int64_t at) noexcept {
    (void)ctx;
    const int64_t inserted = std::max<int64_t>(1, at - insertStart_);
    const int64_t newLen = std::min(mem_.maxFrames(), multiplyBase_ + inserted);
    mode_ = WriteMode::None;
    stopAt_ = -1;
    playLen_ = newLen;
    pos_ = static_cast<double>(std::min(newLen - 1, insertAt_ + inserted));
    // Move what followed the insert point behind the inserted audio once the write head is done;
    // until then the play head reads it from where it was.
    if (copy_.active) finishCopy();
    shiftInserted_ = inserted;
    copy_ = CopyJob{};
    copy_.frames = multiplyBase_ - insertAt_;
    copy_.active = copy_.frames > 0;
    copy_.shift = true;
    copy_.startTau = histEnd_;
    lengthChange_ = newLen;
    lengthChangePending_ = true;
    lengthChangeTau_ = histEnd_;
}

void Looper::stopWriteMode(ProcessContext& ctx, int64_t at) noexcept {
    switch (mode_) {
    case WriteMode::Record: stopRecord(ctx, at, false); break;
    case WriteMode::Multiply: finishMultiply(ctx, at); break;
    case WriteMode::Insert: finishInsert(ctx, at); break;
    default: mode_ = WriteMode::None; break;
    }
}

void Looper::capture(ProcessContext& ctx, int64_t at, double amount, bool seconds) noexcept {
    const CaptureRing* ring = ctx.capture;
    if (!ring) { status_.commandsIgnored.fetch_add(1, std::memory_order_relaxed); return; }
    const int64_t d = latency(ctx);
    int64_t length = 0, playStart = 0, cycle = 0;
    if (seconds) {
        length = static_cast<int64_t>(std::llround(amount * sampleRate_));
        playStart = at - length; // the most recent `amount` seconds
        cycle = length;
    } else {
        const int n = std::max(1, static_cast<int>(std::lround(amount > 0 ? amount : 1)));
        const auto& ls = ctx.loop;
        const bool anchored = ls.syncSource > 0 && ls.anchorId != id() && ls.cycleValid(ctx) && ls.cycleFrames > 0;
        int64_t origin = 0;
        double unit = 0.0;
        if (anchored) {
            origin = ls.cycleOrigin;
            unit = static_cast<double>(ls.cycleFrames);
        } else {
            // The tempo clock's bars.
            const double framesPerBeat = 60.0 * ctx.sampleRate / std::max(1.0, ctx.tempoBpm);
            origin = ctx.segmentStart - static_cast<int64_t>(std::llround(ctx.beats * framesPerBeat));
            unit = framesPerBeat * std::max(1, ctx.beatsPerBar);
        }
        const double k = std::floor(static_cast<double>(at - origin) / unit);
        const int64_t last = origin + static_cast<int64_t>(std::llround(k * unit));
        length = static_cast<int64_t>(std::llround(unit * n));
        playStart = last - length;
        cycle = static_cast<int64_t>(std::llround(unit));
    }
    const int64_t srcStart = playStart + d;
    if (length <= 0 || length > mem_.maxFrames() || !ring->holds(srcStart - std::min(fadeSamples_, kMaxFade))) {
        status_.commandsIgnored.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    cancelWrites(at);
    beginXfade(ctx);
    mem_.beginGeneration(true);
    mem_.setLength(length);
    playLen_ = length;
    cycleFrames_ = std::max<int64_t>(1, cycle);
    dir_ = 1;
    muted_ = paused_ = oneShot_ = false;
    outGain_.reset(1.0f);
    pos_ = static_cast<double>((at - playStart) % length);
    copy_ = CopyJob{};
    copy_.active = true;
    copy_.fromRing = true;
    copy_.srcStart = srcStart;
    copy_.frames = length;
    copy_.fadeTail = true;
    runCopyJob(ctx);
}

BufferData* Looper::loadContent(BufferData* data, bool quantized, ProcessContext& ctx, int64_t at) noexcept {
    BufferData* old = pendingLoad_;
    pendingLoad_ = data;
    pendingLoadAt_ = at;
    if (quantized) {
        int64_t origin = 0;
        double unit = 0.0;
        if (grid(ctx, 1, origin, unit) && unit >= 1.0) {
            const double k = std::ceil(static_cast<double>(at - origin) / unit);
            pendingLoadAt_ = origin + static_cast<int64_t>(std::llround(k * unit));
        }
    }
    return old;
}

void Looper::swapInPendingLoad(ProcessContext& ctx) noexcept {
    BufferData* data = pendingLoad_;
    pendingLoad_ = nullptr;
    cancelWrites(pendingLoadAt_);
    beginXfade(ctx);
    const int64_t length = std::min(data->numFrames, mem_.maxFrames());
    mem_.beginGeneration(true);
    mem_.setLength(length);
    playLen_ = length;
    cycleFrames_ = length;
    pos_ = 0.0;
    dir_ = 1;
    muted_ = paused_ = oneShot_ = false;
    outGain_.reset(1.0f);
    copy_ = CopyJob{};
    copy_.active = true;
    copy_.buffer = data;
    copy_.frames = length;
    runCopyJob(ctx);
}

void Looper::syncLengthFromMemory() noexcept {
    playLen_ = mem_.length();
    if (playLen_ <= 0) {
        pos_ = 0.0;
        cycleFrames_ = 0;
        return;
    }
    if (cycleFrames_ <= 0 || cycleFrames_ > playLen_ || playLen_ % cycleFrames_ != 0) cycleFrames_ = playLen_;
    pos_ = std::fmod(pos_, static_cast<double>(playLen_));
}

// ---------------------------------------------------------------------------------------------
// Reading

float Looper::readLoop(int64_t f, int c) const noexcept {
    if (copy_.active) {
        // Not yet copied: read the source itself.
        if (copy_.shift) {
            const int64_t dst = insertAt_ + shiftInserted_;
            if (f >= dst + copy_.done && f < dst + copy_.frames) {
                const float* p = mem_.frameBefore(f - shiftInserted_);
                return p ? p[c] : 0.0f;
            }
        } else if (f >= copy_.done && f < copy_.frames) {
            if (copy_.fromRing) return ctxRing_ ? ctxRing_->read(copy_.srcStart + f, ringChannel(c)) * inGain_.value() : 0.0f;
            if (copy_.buffer) return copy_.buffer->channel(std::min(c, copy_.buffer->numChannels - 1))[f];
        }
    }
    const float* p = mem_.frame(f);
    return p ? p[c] : 0.0f;
}

float Looper::readOld(int64_t f, int c) const noexcept {
    const float* p = mem_.frameBefore(f);
    return p ? p[c] : 0.0f;
}

void Looper::beginXfade(const ProcessContext& ctx) noexcept {
    (void)ctx;
    const int n = std::max(1, std::min(fadeSamples_, kMaxFade));
    const bool audible = playLen_ > 0 && !paused_ && mode_ != WriteMode::Record && mode_ != WriteMode::Insert &&
                         !(mode_ == WriteMode::Replace && !substitute_);
    // What the listener would hear over the next n frames if nothing changed, including a fade
    // that is still running (a second change mid-fade stays smooth).
    double p = pos_;
    const double wrapLen = static_cast<double>(mode_ == WriteMode::Multiply ? mem_.maxFrames() : std::max<int64_t>(1, playLen_));
    for (int k = 0; k < n; ++k) {
        const bool inFade = xfadePos_ + k < xfadeLen_;
        const float w = inFade ? static_cast<float>(xfadePos_ + k + 1) / static_cast<float>(xfadeLen_ + 1) : 1.0f;
        for (int c = 0; c < channels_; ++c) {
            float v = 0.0f;
            if (audible) {
                const auto f = static_cast<int64_t>(p);
                v = (mode_ == WriteMode::Multiply ? readOld(f % std::max<int64_t>(1, multiplyBase_), c) : readLoop(f, c)) * outGain_.value();
            }
            const float old = inFade ? xfade_[static_cast<size_t>((xfadePos_ + k) * channels_ + c)] : 0.0f;
            scratchFade_[static_cast<size_t>(k * channels_ + c)] = v * w + old * (1.0f - w);
        }
        if (audible) {
            p += speed_ * dir_;
            if (p >= wrapLen) p -= wrapLen;
            if (p < 0) p += wrapLen;
        }
    }
    std::copy_n(scratchFade_.begin(), static_cast<size_t>(n * channels_), xfade_.begin());
    xfadeLen_ = n;
    xfadePos_ = 0;
}

// ---------------------------------------------------------------------------------------------
// Rendering

int64_t Looper::writePosition(int64_t t) const noexcept {
    switch (mode_) {
    case WriteMode::Record: return t - recordStart_;
    case WriteMode::Insert: return insertAt_ + (t - insertStart_);
    default: return static_cast<int64_t>(pos_);
    }
}

int Looper::inputChannel(int c, const ProcessContext& ctx) const noexcept {
    const int n = ctx.capture ? ctx.capture->channels() : std::max(1, ctx.numInputs);
    return std::min(in_ + (channels_ == 1 ? 0 : c), n - 1);
}

int Looper::ringChannel(int c) const noexcept {
    const int n = ctxRing_ ? ctxRing_->channels() : 1;
    return std::min(in_ + (channels_ == 1 ? 0 : c), n - 1);
}

void Looper::render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept {
    ctxRing_ = ctx.capture;
    if (state_ == State::Pending) {
        if (scheduledStart < 0 || scheduledStart >= ctx.blockStartSample + offset + numFrames) return;
        const int at = static_cast<int>(std::max<int64_t>(offset, scheduledStart - ctx.blockStartSample));
        begin(ctx, ctx.blockStartSample + at);
        numFrames -= at - offset;
        offset = at;
    }
    const int64_t now = ctx.blockStartSample + offset;
    if (histEnd_ != now) {
        // First render, or not rendered for a while (paused with /n_run): both heads resume here;
        // a recording or overdub that was running ends where the node stopped.
        if (histEnd_ > 0) {
            for (int64_t t = std::max(writeCursor_, histEnd_ - kHistory + 1); t < histEnd_; ++t)
                histMode_[static_cast<size_t>(t & (kHistory - 1))] = static_cast<uint8_t>(WriteMode::None);
            if (mode_ == WriteMode::Record) stopRecord(ctx, histEnd_, false);
            else if (mode_ != WriteMode::None) stopWriteMode(ctx, histEnd_);
            if (recordEndPending_) { recordEndPending_ = false; mem_.setLength(recordLength_); }
            if (lengthChangePending_) { lengthChangePending_ = false; mem_.setLength(lengthChange_); }
            writeMode_ = WriteMode::None;
            fadeOutLeft_ = 0;
            lastWritePos_ = -1;
        }
        histEnd_ = writeCursor_ = now;
    }
    const int fade = std::max(1, std::min(fadeSamples_, kMaxFade));
    const bool toPair = bus.numChannels >= 2;
    updateSpeed(ctx);
    // The pitch shifter: what it has ready for these frames (fed ahead by aheadFrames_).
    int shiftGot = 0, shiftFed = 0, shiftSkip = 0;
    if (shifter_) {
        StretchVoice& sv = *shifter_;
        if (!shifting_) startShifting(ctx);
        sv.pitchScale.store(pitchScale_, std::memory_order_relaxed);
        for (StretchVoice::Segment seg; sv.segments.tryPop(seg);) {} // its bookkeeping is for players
        // Output frame k of the shifter is the feed of k frames after it started, which was
        // the loop aheadFrames_ later: it sounds aheadFrames_ after the start. Frames it did not
        // have in time are dropped when they come, so that it stays aligned.
        shiftSkip = static_cast<int>(std::min<int64_t>(shiftReadDelay_, numFrames));
        shiftReadDelay_ -= shiftSkip;
        const int want = numFrames - shiftSkip;
        if (!ctx.stretchAhead)
            for (int guard = 0; static_cast<int64_t>(sv.output.readableFrames()) < want + shiftOwed_ && guard < 64; ++guard) sv.step();
        while (shiftOwed_ > 0) {
            const auto n = static_cast<int64_t>(sv.output.read(shiftOut_.data(), static_cast<size_t>(std::min<int64_t>(shiftOwed_, kShiftBlock))));
            if (n == 0) break;
            shiftOwed_ -= n;
        }
        if (shiftOwed_ == 0) shiftGot = static_cast<int>(sv.output.read(shiftOut_.data(), static_cast<size_t>(std::min(want, kShiftBlock))));
        if (shiftGot < want) {
            shiftOwed_ += want - shiftGot; // the worker fell behind: the plain loop covers
            directLeft_ = std::max<int64_t>(directLeft_, numFrames + 64);
        }
    }
    for (int i = offset; i < offset + numFrames; ++i) {
        const int64_t t = ctx.blockStartSample + i;
        // Events due at this sample.
        if (pendingLoad_ && pendingLoadAt_ <= t) swapInPendingLoad(ctx);
        if (pending_.active && pending_.at <= t) {
            pending_.active = false;
            execute(pending_.cmd, pending_.arg, ctx, t, false);
        }
        if (stopAt_ >= 0 && stopAt_ <= t) {
            if (mode_ == WriteMode::Record) {
                const auto& ls = ctx.loop;
                const bool anchored = sync_ && ls.syncSource > 0 && ls.anchorId != id() && ls.cycleValid(ctx) && ls.cycleFrames > 0;
                finishRecord(ctx, stopAt_, stopAt_ - recordStart_, anchored ? ls.cycleFrames : stopAt_ - recordStart_);
            } else if (mode_ == WriteMode::Multiply) {
                finishMultiply(ctx, t);
            } else if (mode_ == WriteMode::Insert) {
                finishInsert(ctx, t);
            } else {
                stopAt_ = -1;
            }
        }
        if (memoryFull_) {
            memoryFull_ = false;
            if (mode_ != WriteMode::None) stopWriteMode(ctx, t);
        }
        if (waitThreshold_) {
            float level = 0.0f;
            for (int c = 0; c < channels_; ++c) level = std::max(level, std::fabs(ctx.inputs[inputChannel(c, ctx)][i]));
            if (level >= recThresh_) {
                waitThreshold_ = false;
                startRecord(ctx, t);
            }
        }
        // History for the write head.
        const size_t h = static_cast<size_t>(t & (kHistory - 1));
        histMode_[h] = static_cast<uint8_t>(waitThreshold_ ? WriteMode::None : mode_);
        histPos_[h] = writePosition(t);
        histEnd_ = t + 1;

        // The loop's output.
        float v[2] = {0.0f, 0.0f};
        const float g = outGain_.next();
        const bool audible = playLen_ > 0 && !paused_ && mode_ != WriteMode::Record && mode_ != WriteMode::Insert &&
                             !(mode_ == WriteMode::Replace && !substitute_);
        if (audible) {
            if (mode_ == WriteMode::Multiply) {
                const int64_t f = static_cast<int64_t>(pos_) % std::max<int64_t>(1, multiplyBase_);
                for (int c = 0; c < channels_; ++c) v[c] = readOld(f, c) * g;
            } else {
                const auto f0 = static_cast<int64_t>(pos_);
                const auto frac = static_cast<float>(pos_ - static_cast<double>(f0));
                const int64_t f1 = f0 + 1 >= playLen_ ? 0 : f0 + 1;
                for (int c = 0; c < channels_; ++c) {
                    const float a = readLoop(f0, c);
                    v[c] = (frac == 0.0f ? a : a + (readLoop(f1, c) - a) * frac) * g;
                }
            }
        }
        if (shifter_ && shiftFed < kShiftBlock) {
            // Feed the shifter what the play head will read aheadFrames_ from now (held on
            // course: nudged towards it, or set there after a jump), and play what it gives
            // for now when there is a shift to hear.
            const double L = static_cast<double>(std::max<int64_t>(1, playLen_));
            double target = pos_ + static_cast<double>(aheadFrames_) * speed_ * dir_;
            target = std::fmod(target, L);
            if (target < 0) target += L;
            double gap = target - aheadPos_;
            if (gap > L / 2) gap -= L;
            if (gap < -L / 2) gap += L;
            if (std::fabs(gap) > 512.0) { aheadPos_ = target; gap = 0.0; directLeft_ = aheadFrames_ + 256; }
            float a[2] = {0.0f, 0.0f};
            if (playLen_ > 0 && mode_ != WriteMode::Record && mode_ != WriteMode::Insert && mode_ != WriteMode::Multiply) readAt(aheadPos_, a);
            shiftIn_[static_cast<size_t>(shiftFed)] = a[0];                                  // planar: left,
            shiftIn_[static_cast<size_t>(kShiftBlock + shiftFed)] = channels_ == 1 ? a[0] : a[1]; // then right
            ++shiftFed;
            aheadPos_ += speed_ * dir_ + gap / 1024.0;
            if (aheadPos_ >= L) aheadPos_ -= L;
            if (aheadPos_ < 0.0) aheadPos_ += L;
            const int k = i - offset - shiftSkip; // this frame in what the shifter gave
            const bool useShift = audible && pitchScale_ != 1.0 && k >= 0 && k < shiftGot && directLeft_ <= 0 && mode_ != WriteMode::Multiply;
            if (useShift && shiftMix_ < kShiftFade) ++shiftMix_;
            else if (!useShift && shiftMix_ > 0) --shiftMix_;
            if (directLeft_ > 0) --directLeft_;
            if (shiftMix_ > 0 && k >= 0 && k < shiftGot) {
                const float w = static_cast<float>(shiftMix_) / static_cast<float>(kShiftFade);
                for (int c = 0; c < channels_; ++c) {
                    const float shifted = shiftOut_[static_cast<size_t>(2 * k + c)] * g;
                    v[c] = shifted * w + v[c] * (1.0f - w);
                }
            }
        }
        if (xfadePos_ < xfadeLen_) {
            const float w = static_cast<float>(xfadePos_ + 1) / static_cast<float>(xfadeLen_ + 1);
            for (int c = 0; c < channels_; ++c) v[c] = v[c] * w + xfade_[static_cast<size_t>(xfadePos_ * channels_ + c)] * (1.0f - w);
            ++xfadePos_;
        }
        const float env = nextEnvelope();
        const float wet = wet_.next() * env;
        const float dry = dry_.next() * env;
        inGain_.next();
        for (int c = 0; c < channels_; ++c) outPeak_ = std::max(outPeak_, std::fabs(v[c] * wet));
        for (int c = 0; c < channels_; ++c) inPeak_ = std::max(inPeak_, std::fabs(ctx.inputs[inputChannel(c, ctx)][i]));
        if (channels_ == 1) {
            const float s = v[0] * wet + ctx.inputs[inputChannel(0, ctx)][i] * dry;
            if (toPair) {
                const dsp::StereoGains pg = dsp::constantPowerPan(pan_[0] * 2.0f - 1.0f);
                bus.ch[0][i] += pg.left * s;
                bus.ch[1][i] += pg.right * s;
            } else if (bus.numChannels > 0) {
                bus.ch[0][i] += s;
            }
        } else {
            for (int c = 0; c < 2 && c < bus.numChannels; ++c)
                bus.ch[c][i] += v[c] * wet + ctx.inputs[inputChannel(c, ctx)][i] * dry;
        }

        // Advance the play head.
        if (playLen_ > 0 && !paused_ && mode_ != WriteMode::Record && mode_ != WriteMode::Insert) {
            if (mode_ == WriteMode::Multiply) {
                pos_ += 1.0;
                if (pos_ >= static_cast<double>(mem_.maxFrames() - 1)) finishMultiply(ctx, t + 1);
            } else {
                const auto L = static_cast<double>(playLen_);
                pos_ += speed_ * dir_;
                if (oneShot_) {
                    const double left = dir_ > 0 ? L - pos_ : pos_;
                    if (left <= static_cast<double>(fade) * speed_) {
                        // One pass only: fade out into the end, then stay muted (SooperLooper).
                        oneShot_ = false;
                        muted_ = true;
                        outGain_.setTarget(0.0f, std::max<int64_t>(1, static_cast<int64_t>(left / speed_)));
                    }
                }
                if (pos_ >= L) pos_ -= L;
                if (pos_ < 0.0) pos_ += L;
                if (pos_ >= L || pos_ < 0.0) pos_ = 0.0;
            }
        }
    }
    if (shiftFed > 0) {
        StretchVoice& sv = *shifter_;
        const float* planar[2] = {shiftIn_.data(), shiftIn_.data() + kShiftBlock};
        const size_t pushed = sv.input.writePlanar(planar, 0, static_cast<size_t>(shiftFed), 2);
        sv.realPushed.fetch_add(static_cast<int64_t>(pushed), std::memory_order_release);
    }
    // The write head follows as far as the input has arrived.
    const CaptureRing* ring = ctx.capture;
    const int64_t d = latency(ctx);
    const int64_t until = ring ? std::min(histEnd_, ring->end() - d) : histEnd_;
    runWriteHead(ctx, until);
    runCopyJob(ctx);
    handBack(ctx);
    if (writing()) ++ctx.loop.writers;
    publish(ctx);
    finishSegment(ctx);
}

void Looper::handleWriteEvents(const ProcessContext& ctx, int64_t tau) noexcept {
    if (recordEndPending_ && tau >= recordEndTau_) {
        recordEndPending_ = false;
        mem_.setLength(recordLength_);
        crossfadeTail(recordStart_ + latency(ctx), recordLength_);
    }
    if (lengthChangePending_ && tau >= lengthChangeTau_) {
        lengthChangePending_ = false;
        mem_.setLength(lengthChange_);
    }
}

void Looper::runWriteHead(ProcessContext& ctx, int64_t until) noexcept {
    const CaptureRing* ring = ctx.capture;
    if (!ring) { writeCursor_ = std::max(writeCursor_, until); return; }
    const int64_t d = latency(ctx);
    const int fade = std::max(1, std::min(fadeSamples_, kMaxFade));
    writeCursor_ = std::max(writeCursor_, histEnd_ - kHistory + 1);
    for (int64_t tau = writeCursor_; tau < until; ++tau) {
        handleWriteEvents(ctx, tau);
        const size_t h = static_cast<size_t>(tau & (kHistory - 1));
        const auto m = static_cast<WriteMode>(histMode_[h]);
        const int64_t pos = histPos_[h];
        const int64_t L = mem_.length();
        const bool layered = m == WriteMode::Overdub || m == WriteMode::Replace;
        if (m != writeMode_) {
            if ((writeMode_ == WriteMode::Overdub || writeMode_ == WriteMode::Replace) && lastWritePos_ >= 0)
                startFadeOut(writeMode_, L, fade);
            if (m != WriteMode::None) {
                if (copy_.active) finishCopy();
                mem_.beginGeneration(m == WriteMode::Record);
                writeRun_ = 0;
                lastWritePos_ = -1;
            }
            writeMode_ = m;
        } else if (layered && lastWritePos_ >= 0) {
            // The play head jumped while writing (reverse, trigger, a rate change): end the old
            // trajectory with a fade-out and fade the input in again where the head went.
            int64_t step = pos - lastWritePos_;
            if (L > 0) {
                if (step > L / 2) step -= L;
                if (step < -L / 2) step += L;
            }
            const bool near = std::llabs(step) <= 4;
            const bool continuous = step == 0 || (near && (lastWriteDir_ == 0 || (step > 0) == (lastWriteDir_ > 0)));
            if (!continuous) {
                startFadeOut(m, L, fade);
                writeRun_ = 0;
                lastWriteDir_ = near ? (step > 0 ? 1 : -1) : 0; // a jump: the next step tells
            } else if (step != 0) {
                lastWriteDir_ = step > 0 ? 1 : -1;
            }
        }
        if (fadeOutLeft_ > 0) {
            writeFrame(ctx, fadeOutMode_, fadeOutPos_, tau + d, static_cast<float>(fadeOutLeft_) / static_cast<float>(fade + 1));
            fadeOutPos_ += fadeOutDir_;
            if (L > 0) fadeOutPos_ = ((fadeOutPos_ % L) + L) % L;
            --fadeOutLeft_;
        }
        if (m != WriteMode::None) {
            const float w = m == WriteMode::Record ? 1.0f : std::min(1.0f, static_cast<float>(writeRun_ + 1) / static_cast<float>(fade));
            writeFrame(ctx, m, pos, tau + d, w);
            ++writeRun_;
            if (layered && lastWritePos_ < 0) lastWriteDir_ = dir_;
            lastWritePos_ = layered ? pos : -1;
        } else {
            lastWritePos_ = -1;
        }
    }
    writeCursor_ = std::max(writeCursor_, until);
    handleWriteEvents(ctx, writeCursor_);
}

void Looper::startFadeOut(WriteMode m, int64_t length, int fade) noexcept {
    fadeOutLeft_ = fade;
    fadeOutMode_ = m;
    fadeOutDir_ = lastWriteDir_ != 0 ? lastWriteDir_ : 1;
    fadeOutPos_ = lastWritePos_ + fadeOutDir_;
    if (length > 0) fadeOutPos_ = ((fadeOutPos_ % length) + length) % length;
}

void Looper::writeFrame(ProcessContext& ctx, WriteMode m, int64_t pos, int64_t inputTime, float w) noexcept {
    if (pos < 0 || pos >= mem_.maxFrames()) return;
    if (m == WriteMode::Record && recordEndPending_ && pos >= recordLength_) return;
    float* f = mem_.writable(pos);
    if (!f) {
        memoryFull_ = true;
        status_.memoryFull.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    const CaptureRing* ring = ctx.capture;
    const float g = inGain_.value();
    const float keep = 1.0f - w * (1.0f - feedback_);
    const float* old = m == WriteMode::Multiply ? mem_.frameBefore(pos % std::max<int64_t>(1, multiplyBase_)) : nullptr;
    for (int c = 0; c < channels_; ++c) {
        const float in = ring->read(inputTime, inputChannel(c, ctx)) * g;
        switch (m) {
        case WriteMode::Record: f[c] = in; break;
        case WriteMode::Overdub: f[c] = f[c] * keep + in * w; break;
        case WriteMode::Replace: f[c] = f[c] * (1.0f - w) + in * w; break;
        case WriteMode::Multiply: f[c] = (old ? old[c] : 0.0f) * keep + in * w; break;
        case WriteMode::Insert: f[c] = in * w; break;
        case WriteMode::None: break;
        }
    }
}

void Looper::crossfadeTail(int64_t srcStart, int64_t length) noexcept {
    const CaptureRing* ring = ctxRing_;
    const int64_t n = std::min<int64_t>(std::min(fadeSamples_, kMaxFade), length / 2);
    if (!ring || n <= 0) return;
    const float g = inGain_.value();
    for (int64_t k = 0; k < n; ++k) {
        const float w = static_cast<float>(k + 1) / static_cast<float>(n + 1);
        float* f = mem_.writable(length - n + k);
        if (!f) return;
        for (int c = 0; c < channels_; ++c) {
            const float pre = ring->read(srcStart - n + k, ringChannel(c)) * g;
            f[c] = f[c] * (1.0f - w) + pre * w;
        }
    }
}

bool Looper::copyStep(int64_t budget) noexcept {
    // Page by page: one copy-on-write lookup per page, then a straight run of frames.
    const int ch = channels_;
    while (budget > 0 && copy_.done < copy_.frames) {
        const int64_t j = copy_.done;
        const int64_t dstFrame = copy_.shift ? insertAt_ + shiftInserted_ + j : j;
        int64_t run = std::min({budget, copy_.frames - j, LoopMemory::kPageFrames - dstFrame % LoopMemory::kPageFrames});
        if (copy_.fromRing) {
            if (!ctxRing_) return false;
            run = std::min(run, ctxRing_->end() - (copy_.srcStart + j)); // the rest has not arrived yet
            if (run <= 0) return false;
        }
        float* dst = mem_.writable(dstFrame);
        if (!dst) {
            memoryFull_ = true;
            status_.memoryFull.fetch_add(1, std::memory_order_relaxed);
            copy_.frames = copy_.done;
            break;
        }
        if (copy_.shift) {
            for (int64_t k = 0; k < run; ++k) {
                const float* src = mem_.frameBefore(insertAt_ + j + k);
                for (int c = 0; c < ch; ++c) dst[k * ch + c] = src ? src[c] : 0.0f;
            }
        } else if (copy_.fromRing) {
            const float g = inGain_.value();
            for (int c = 0; c < ch; ++c) {
                const int rc = ringChannel(c);
                for (int64_t k = 0; k < run; ++k) dst[k * ch + c] = ctxRing_->read(copy_.srcStart + j + k, rc) * g;
            }
        } else if (copy_.buffer) {
            for (int c = 0; c < ch; ++c) {
                const float* src = copy_.buffer->channel(std::min(c, copy_.buffer->numChannels - 1)) + j;
                for (int64_t k = 0; k < run; ++k) dst[k * ch + c] = src[k];
            }
        }
        copy_.done += run;
        budget -= run;
    }
    return copy_.done >= copy_.frames;
}

void Looper::completeCopy() noexcept {
    if (copy_.fadeTail) crossfadeTail(copy_.srcStart, copy_.frames);
    if (copy_.buffer) queueHandBack(const_cast<BufferData*>(copy_.buffer), false);
    copy_ = CopyJob{};
}

void Looper::runCopyJob(ProcessContext& ctx) noexcept {
    (void)ctx;
    if (!copy_.active || writeCursor_ < copy_.startTau) return;
    if (copyStep(kCopyFramesPerBlock)) completeCopy();
}

void Looper::finishCopy() noexcept {
    if (!copy_.active) return;
    copyStep(copy_.frames);
    completeCopy();
}

void Looper::queueHandBack(BufferData* b, bool saved) noexcept {
    for (auto& slot : handBack_)
        if (!slot.data) { slot.data = b; slot.saved = saved; return; }
    // Full (cannot happen with one load and one save in flight): keep it until the node is freed.
    leaked_ = b;
}

void Looper::updateSpeed(const ProcessContext& ctx) noexcept {
    // With tempo_stretch the ratio is the loop's own tempo (eighth_per_cycle eighths in a cycle,
    // SooperLooper's reading) over the clock's; else stretch_ratio.
    double ratio = stretchRatio_;
    if (tempoStretch_ && cycleFrames_ > 0 && ctx.tempoBpm > 0.0) {
        const double cycleSeconds = static_cast<double>(cycleFrames_) / sampleRate_;
        const double loopTempo = 30.0 * ctx.loop.eighthPerCycle / cycleSeconds;
        ratio = std::clamp(loopTempo / ctx.tempoBpm, 0.5, 4.0);
    }
    speed_ = static_cast<double>(rate_) / ratio;
    const double shift = ratio * std::exp2(static_cast<double>(pitchShift_) / 12.0);
    pitchScale_ = std::fabs(shift - 1.0) < 1e-6 ? 1.0 : shift;
}

bool Looper::needsShifter(LoopCtl c, float value) noexcept {
    switch (c) {
    case LoopCtl::PitchShift: return value != 0.0f;
    case LoopCtl::StretchRatio: return value != 1.0f;
    case LoopCtl::TempoStretch: return value != 0.0f;
    default: return false;
    }
}

StretchVoice* Looper::attachShifter(StretchVoice* v) noexcept {
    if (shifter_) return v; // one is enough: give the new one back
    shifter_.reset(v);
    shifting_ = false;
    return nullptr;
}

void Looper::startShifting(ProcessContext& ctx) noexcept {
    // The first block: prime the shifter at pitch 1 and run the feed aheadFrames_ ahead of the
    // play head (its latency plus a margin for the worker); until its output has caught up the
    // plain loop plays.
    (void)ctx;
    StretchVoice& sv = *shifter_;
    aheadFrames_ = sv.stretcher->startDelay() + kShiftMargin;
    sv.timeRatio.store(1.0, std::memory_order_relaxed);
    sv.pitchScale.store(pitchScale_, std::memory_order_relaxed);
    sv.realPushed.store(0, std::memory_order_relaxed);
    sv.primeRequest.fetch_add(1, std::memory_order_release);
    aheadPos_ = pos_;
    directLeft_ = aheadFrames_ + 256;
    shiftReadDelay_ = aheadFrames_;
    shiftOwed_ = 0;
    shiftMix_ = 0;
    shifting_ = true;
}

void Looper::readAt(double p, float* v) const noexcept {
    const auto f0 = static_cast<int64_t>(p);
    const auto frac = static_cast<float>(p - static_cast<double>(f0));
    const int64_t f1 = f0 + 1 >= playLen_ ? 0 : f0 + 1;
    for (int c = 0; c < channels_; ++c) {
        const float a = readLoop(f0, c);
        v[c] = frac == 0.0f ? a : a + (readLoop(f1, c) - a) * frac;
    }
}

void Looper::handBack(ProcessContext& ctx) noexcept {
    for (auto& slot : handBack_) {
        if (!slot.data) continue;
        if (ctx.numHandBack >= ProcessContext::kMaxHandBack) return;
        ctx.handBack[ctx.numHandBack++] = ProcessContext::HandBack{slot.data, id(), slot.saved};
        slot.data = nullptr;
    }
    // A save in progress: copy a slice per render, once the write head has finished what the
    // play head already shows (a recording's last frames arrive one round trip later).
    if (save_.dst && !save_.started && !recordEndPending_ && !lengthChangePending_ && !copy_.active) {
        save_.started = true;
        save_.frames = std::min(save_.dst->numFrames, mem_.length());
        save_.dst->numFrames = save_.frames;
    }
    if (save_.dst && save_.started) {
        const int64_t n = std::min(save_.frames - save_.done, kCopyFramesPerBlock);
        for (int64_t j = save_.done; j < save_.done + n; ++j)
            for (int c = 0; c < save_.dst->numChannels; ++c) {
                const float* f = mem_.frame(j);
                save_.dst->channel(c)[j] = f ? f[std::min(c, channels_ - 1)] : 0.0f;
            }
        save_.done += n;
        if (save_.done >= save_.frames) {
            queueHandBack(save_.dst, true);
            save_ = SaveJob{};
        }
    }
}

bool Looper::startSave(BufferData* dst) noexcept {
    if (save_.dst || !dst) return false;
    save_.dst = dst;
    save_.started = false;
    save_.done = 0;
    return true;
}

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
    if (ctx.loop.anchorId == id()) {
        if (playLen_ > 0 && cycleFrames_ > 0 && mode_ != WriteMode::Record && mode_ != WriteMode::Multiply && mode_ != WriteMode::Insert) {
            ctx.loop.cycleFrames = cycleFrames_;
            const double inCycle = std::fmod(dir_ > 0 ? pos_ : static_cast<double>(playLen_) - pos_, static_cast<double>(cycleFrames_));
            ctx.loop.cycleOrigin = histEnd_ - static_cast<int64_t>(std::llround(inCycle / std::max(0.125, speed_)));
            ctx.loop.cycleStamp = ctx.blockStartSample;
        } else if (mode_ != WriteMode::Multiply && mode_ != WriteMode::Insert) {
            ctx.loop.cycleStamp = -1;
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
        m.buffer = loadContent(m.buffer, m.a != 0.0f, ctx, now); // what it is done with goes back
        return true;
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
