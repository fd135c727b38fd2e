// The looper's audio (Looper.h): the play head (loop and undo-history reads, crossfades, rate,
// the pitch shifter) and the write head (input latency compensation, overdub/replace/insert
// writes with fades, the loop's tail crossfade), block by block.
#include "server/nodes/looper/Looper.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dsp/Pan.h"
#include "server/engine/BufferData.h"
#include "server/rt/CaptureRing.h"

namespace loopd {

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

int64_t Looper::writePosition(int64_t t) const noexcept {
    switch (mode_) {
    case WriteMode::Record: return t - recordStart_;
    case WriteMode::Insert: return insertAt_ + (t - insertStart_);
    default: return static_cast<int64_t>(pos_);
    }
}

int Looper::inputChannel(int c, const ProcessContext& ctx) const noexcept {
    const int n = ctx.loopers.capture ? ctx.loopers.capture->channels() : std::max(1, ctx.numInputs);
    return std::min(in_ + (channels_ == 1 ? 0 : c), n - 1);
}

int Looper::ringChannel(int c) const noexcept {
    const int n = ctxRing_ ? ctxRing_->channels() : 1;
    return std::min(in_ + (channels_ == 1 ? 0 : c), n - 1);
}

void Looper::render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept {
    ctxRing_ = ctx.loopers.capture;
    if (state_ == State::Pending) {
        if (!beginWithin(ctx, offset, numFrames)) return;
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
    const bool idle = idleThrough(numFrames);
    if (idle) renderIdle(ctx, bus, offset, numFrames);
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
        if (!ctx.players.stretchAhead)
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
    for (int i = offset; !idle && i < offset + numFrames; ++i) {
        const int64_t t = ctx.blockStartSample + i;
        // Events due at this sample.
        if (pendingLoad_ && pendingLoadAt_ <= t) swapInPendingLoad(ctx);
        if (pending_.active && pending_.press >= 0) {
            if (i == offset) decideOnsetPress(ctx, t);
        } else if (pending_.active && pending_.at <= t) {
            pending_.active = false;
            execute(pending_.cmd, pending_.arg, ctx, t, false);
        }
        if (stopAt_ >= 0 && stopAt_ <= t) {
            if (mode_ == WriteMode::Record) {
                const auto& ls = ctx.loopers.sync;
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
                if (pos_ >= L) { pos_ -= L; onWrap(ctx, t + 1); }
                if (pos_ < 0.0) { pos_ += L; onWrap(ctx, t + 1); }
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
    const CaptureRing* ring = ctx.loopers.capture;
    const int64_t d = latency(ctx);
    const int64_t until = ring ? std::min(histEnd_, ring->end() - d) : histEnd_;
    runWriteHead(ctx, until);
    runCopyJob(ctx);
    handBack(ctx);
    if (writing()) ++ctx.loopers.sync.writers;
    publish(ctx);
    finishSegment(ctx);
}

bool Looper::idleThrough(int numFrames) const noexcept {
    // Nothing the per-sample loop would do differs from sample to sample: no loop to play or
    // advance through (playLen_ 0), nothing written, nothing due, no fade or ramp that changes
    // the dry sound (the other ramps only scale the silent loop: they are skipped).
    return numFrames > 0 && idleShortcut_.load(std::memory_order_relaxed) && !shifter_ && playLen_ == 0 &&
           mode_ == WriteMode::None && !pendingLoad_ && !pending_.active && stopAt_ < 0 && !memoryFull_ && !waitThreshold_ &&
           xfadePos_ >= xfadeLen_ && !dry_.ramping() && envelopeStatic();
}

void Looper::renderIdle(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept {
    // The history of a write head that stands still (writePosition() with no mode).
    const int64_t t0 = ctx.blockStartSample + offset;
    const auto still = static_cast<int64_t>(pos_);
    for (int k = 0; k < numFrames; ++k) {
        const auto h = static_cast<size_t>((t0 + k) & (kHistory - 1));
        histMode_[h] = static_cast<uint8_t>(WriteMode::None);
        histPos_[h] = still;
    }
    histEnd_ = t0 + numFrames;
    outGain_.skip(numFrames);
    wet_.skip(numFrames);
    inGain_.skip(numFrames);
    idleFrames_.fetch_add(static_cast<uint64_t>(numFrames), std::memory_order_relaxed);
    // The input at the dry level (the loop's part, 0 * wet, adds nothing), its peak.
    const float dry = dry_.value() * envelopeValue();
    for (int c = 0; c < channels_; ++c) {
        const float* x = ctx.inputs[inputChannel(c, ctx)] + offset;
        float peak = inPeak_;
        for (int i = 0; i < numFrames; ++i) peak = std::max(peak, std::fabs(x[i]));
        inPeak_ = peak;
    }
    if (channels_ == 1) {
        const float* x = ctx.inputs[inputChannel(0, ctx)] + offset;
        if (bus.numChannels >= 2) {
            const dsp::StereoGains pg = dsp::constantPowerPan(pan_[0] * 2.0f - 1.0f);
            float* l = bus.ch[0] + offset;
            float* r = bus.ch[1] + offset;
            for (int i = 0; i < numFrames; ++i) {
                const float s = x[i] * dry;
                l[i] += pg.left * s;
                r[i] += pg.right * s;
            }
        } else if (bus.numChannels > 0) {
            float* o = bus.ch[0] + offset;
            for (int i = 0; i < numFrames; ++i) o[i] += x[i] * dry;
        }
    } else {
        for (int c = 0; c < 2 && c < bus.numChannels; ++c) {
            const float* x = ctx.inputs[inputChannel(c, ctx)] + offset;
            float* o = bus.ch[c] + offset;
            for (int i = 0; i < numFrames; ++i) o[i] += x[i] * dry;
        }
    }
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
    const CaptureRing* ring = ctx.loopers.capture;
    if (!ring) { writeCursor_ = std::max(writeCursor_, until); return; }
    writeCursor_ = std::max(writeCursor_, histEnd_ - kHistory + 1);
    if (idleShortcut_.load(std::memory_order_relaxed) && writeMode_ == WriteMode::None && fadeOutLeft_ == 0 &&
        !recordEndPending_ && !lengthChangePending_) {
        // A write head that stays still over the whole range (every history entry: no mode)
        // writes nothing and has no event to handle: what the loop below would leave.
        bool still = true;
        for (int64_t tau = writeCursor_; tau < until && still; ++tau)
            still = histMode_[static_cast<size_t>(tau & (kHistory - 1))] == static_cast<uint8_t>(WriteMode::None);
        if (still) {
            if (until > writeCursor_) lastWritePos_ = -1;
            writeCursor_ = std::max(writeCursor_, until);
            return;
        }
    }
    const int64_t d = latency(ctx);
    const int fade = std::max(1, std::min(fadeSamples_, kMaxFade));
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
    const CaptureRing* ring = ctx.loopers.capture;
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

void Looper::updateSpeed(const ProcessContext& ctx) noexcept {
    // With tempo_stretch the ratio is the loop's own tempo (eighth_per_cycle eighths in a cycle,
    // SooperLooper's reading) over the clock's; else stretch_ratio.
    double ratio = stretchRatio_;
    if (tempoStretch_ && cycleFrames_ > 0 && ctx.tempoBpm > 0.0) {
        const double cycleSeconds = static_cast<double>(cycleFrames_) / sampleRate_;
        const double loopTempo = 30.0 * ctx.loopers.sync.eighthPerCycle / cycleSeconds;
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

} // namespace loopd
