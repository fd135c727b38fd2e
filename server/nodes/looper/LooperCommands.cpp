// The looper's command state machine (Looper.h): when a command takes effect (quantisation to
// the loop's cycle or the clock's grid, SooperLooper's retroactive lenience), and what it does —
// record, overdub, multiply, insert, replace, substitute, reverse, mute, undo/redo, trigger,
// pause, capture — to the write modes and the loop's length.
#include "server/nodes/looper/Looper.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dsp/Pan.h"
#include "server/engine/BufferData.h"
#include "server/rt/CaptureRing.h"

namespace loopd {

bool Looper::grid(const ProcessContext& ctx, int quantize, int64_t& origin, double& unit) const noexcept {
    if (quantize <= 0 || quantize > 3) return false; // 4 (onset) has no grid
    const auto& ls = ctx.loopers.sync;
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
        const auto& ls = ctx.loopers.sync;
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
    if (mayRetro && at - before <= ctx.loopers.sync.lenienceFrames && at - before < kHistory / 2) {
        retro = true;
        return before;
    }
    return after;
}

void Looper::command(LoopCmd c, float arg, ProcessContext& ctx, int64_t at) noexcept {
    if (pending_.active && c == pending_.cmd && c != LoopCmd::Record) {
        pending_.active = false; // a second press cancels a waiting command
        return;
    }
    if (quantize_ == 4 && c == LoopCmd::Record && ctx.loopers.onsets) {
        // Onset quantize: wait until the onsets around the press are known (decideOnsetPress).
        const int64_t reach = std::min<int64_t>(ctx.loopers.sync.lenienceFrames, kHistory / 2 - std::llround((kOnsetLatencySeconds + 0.05) * ctx.sampleRate));
        pending_ = Pending{true, c, arg, at + std::max<int64_t>(reach, 0) + std::llround(kOnsetLatencySeconds * ctx.sampleRate), at};
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

void Looper::decideOnsetPress(ProcessContext& ctx, int64_t t) noexcept {
    const int64_t press = pending_.press;
    const int64_t reach = std::max<int64_t>(0, std::min<int64_t>(ctx.loopers.sync.lenienceFrames,
                                                                 kHistory / 2 - std::llround((kOnsetLatencySeconds + 0.05) * ctx.sampleRate)));
    bool after = false;
    const int64_t onset = ctx.loopers.onsets->nearest(press, press - reach, press + reach, after);
    if (!after && t < pending_.at) return; // a nearer onset may still be reported
    pending_.active = false;
    int64_t when = onset >= 0 ? onset : press;
    when = std::clamp<int64_t>(when, t - kHistory / 2, t);
    execute(pending_.cmd, pending_.arg, ctx, when, when < t);
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
        if (pendingLoad_ && len() <= 0) { loadMuted_ = m; return; } // for the content about to land
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
        if (pendingLoad_ && len() <= 0) { loadPaused_ = p; return; } // for the content about to land
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
    const auto& ls = ctx.loopers.sync;
    const bool anchored = sync_ && ls.syncSource > 0 && ls.anchorId != id() && ls.cycleValid(ctx) && ls.cycleFrames > 0;
    const bool gridded = quantize_ > 0 && quantize_ < 4; // 4 (onset) placed the stop itself
    const bool clocked = sync_ && ls.syncSource < 0 && gridded;
    if ((anchored && gridded) || clocked) {
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
    const CaptureRing* ring = ctx.loopers.capture;
    if (!ring) { status_.commandsIgnored.fetch_add(1, std::memory_order_relaxed); return; }
    const int64_t d = latency(ctx);
    int64_t length = 0, playStart = 0, cycle = 0;
    if (seconds) {
        length = static_cast<int64_t>(std::llround(amount * sampleRate_));
        playStart = at - length; // the most recent `amount` seconds
        cycle = length;
    } else {
        const int n = std::max(1, static_cast<int>(std::lround(amount > 0 ? amount : 1)));
        const auto& ls = ctx.loopers.sync;
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

} // namespace loopd
