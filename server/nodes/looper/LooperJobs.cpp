// The looper's jobs (Looper.h): copies spread over blocks (capture, load, insert; 8192 frames a
// render), content loaded from a file swapped in (at once or at the next boundary), saves copied
// out, and what goes back to the control thread by the hand-back lane.
#include "server/nodes/looper/Looper.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dsp/Pan.h"
#include "server/engine/BufferData.h"
#include "server/rt/CaptureRing.h"

namespace loopd {

namespace {
// Frames a capture, load or insert copies per render: 128x real time at block 64, a small
// share of the block's budget (loopd_looper_bench editBlock/capture).
constexpr int64_t kCopyFramesPerBlock = 8192;
} // namespace

BufferData* Looper::loadContent(BufferData* data, LoadAt when, ProcessContext& ctx, int64_t at) noexcept {
    BufferData* old = pendingLoad_;
    const int64_t oldAt = pendingLoadAt_;
    const bool oldAtWrap = loadAtWrap_;
    pendingLoad_ = data;
    pendingLoadAt_ = at;
    loadAtWrap_ = false;
    if (when == LoadAt::Wrap && old && len() <= 0) {
        // Nothing plays yet and a load waits (for a bar): this one replaces it at that time.
        pendingLoadAt_ = oldAt;
        loadAtWrap_ = oldAtWrap;
    } else if (when == LoadAt::Wrap && len() > 0 && !paused_) {
        pendingLoadAt_ = INT64_MAX; // onWrap sets it
        loadAtWrap_ = true;
    } else if (when == LoadAt::Boundary) {
        int64_t origin = 0;
        double unit = 0.0;
        if (grid(ctx, 1, origin, unit) && unit >= 1.0) {
            const double k = std::ceil(static_cast<double>(at - origin) / unit);
            pendingLoadAt_ = origin + static_cast<int64_t>(std::llround(k * unit));
        }
    } else if (when == LoadAt::Bar || when == LoadAt::Beat) {
        // The clock's next bar (or beat) line (this sample when it is one).
        const double framesPerBeat = 60.0 * ctx.sampleRate / std::max(1.0, ctx.tempoBpm);
        const double beatsPerBar = when == LoadAt::Beat ? 1.0 : std::max(1, ctx.beatsPerBar);
        const double beatsAt = ctx.beats + static_cast<double>(at - ctx.segmentStart) / framesPerBeat;
        const double toBar = std::ceil(beatsAt / beatsPerBar - 1e-9) * beatsPerBar - beatsAt;
        pendingLoadAt_ = at + static_cast<int64_t>(std::llround(std::max(0.0, toBar) * framesPerBeat));
    }
    return old;
}

void Looper::onWrap(ProcessContext& ctx, int64_t at) noexcept {
    lastWrap_ = at;
    status_.wrapSample.store(at, std::memory_order_relaxed);
    status_.wraps.fetch_add(1, std::memory_order_release);
    if (pendingLoad_ && loadAtWrap_) {
        loadAtWrap_ = false;
        pendingLoadAt_ = at; // swapped as the sample `at` renders
    } else if (pendingMix_ && !copy_.active) {
        startMix(ctx);
    }
}

void Looper::startMix(ProcessContext& ctx) noexcept {
    // One undo generation: the pages the take touches are copied on their first write.
    BufferData* data = pendingMix_;
    pendingMix_ = nullptr;
    mem_.beginGeneration(false);
    copy_ = CopyJob{};
    copy_.active = true;
    copy_.add = true;
    copy_.buffer = data;
    copy_.frames = std::min(data->numFrames, len());
    status_.mixWrap.store(status_.wraps.load(std::memory_order_relaxed), std::memory_order_relaxed);
    status_.mixes.fetch_add(1, std::memory_order_release);
    runCopyJob(ctx);
}

void Looper::runTake() noexcept {
    if (!take_.dst || !ctxRing_) return;
    const int64_t from = take_.srcStart + take_.done;
    const int64_t n = std::min({take_.frames - take_.done, kCopyFramesPerBlock, ctxRing_->end() - from});
    if (n <= 0 && take_.done < take_.frames) return; // the input has not arrived yet
    for (int c = 0; c < take_.dst->numChannels; ++c) {
        const int rc = ringChannel(std::min(c, channels_ - 1));
        float* dst = take_.dst->channel(c) + take_.done;
        for (int64_t k = 0; k < n; ++k) dst[k] = ctxRing_->read(from + k, rc);
    }
    take_.done += std::max<int64_t>(n, 0);
    if (take_.done >= take_.frames) {
        queueHandBack(take_.dst, true);
        take_ = TakeJob{};
    }
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
    onWrap(ctx, pendingLoadAt_); // a new cycle starts
    dir_ = 1;
    // Paused or muted while the load waited in an empty loop (a session or project loaded): so it lands.
    muted_ = loadMuted_;
    paused_ = loadPaused_;
    oneShot_ = loadMuted_ = loadPaused_ = false;
    outGain_.reset(muted_ ? 0.0f : 1.0f);
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
                if (copy_.add)
                    for (int64_t k = 0; k < run; ++k) dst[k * ch + c] += src[k];
                else
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

void Looper::handBack(ProcessContext& ctx) noexcept {
    for (auto& slot : handBack_) {
        if (!slot.data) continue;
        if (ctx.report.numHandBack >= ProcessContext::Report::kMaxHandBack) return;
        ctx.report.handBack[ctx.report.numHandBack++] = ProcessContext::Report::HandBack{slot.data, id(), slot.saved};
        slot.data = nullptr;
    }
    runTake();
    // Saves in progress (a client's and the jam's may overlap): a slice each per render, once the
    // write head has finished what the play head already shows (a recording's last frames arrive
    // one round trip later).
    for (SaveJob& save : saves_) {
        if (save.dst && !save.started && !recordEndPending_ && !lengthChangePending_ && !copy_.active) {
            save.started = true;
            save.frames = std::min(save.dst->numFrames, mem_.length());
            save.dst->numFrames = save.frames;
        }
        if (save.dst && save.started) {
            const int64_t n = std::min(save.frames - save.done, kCopyFramesPerBlock);
            for (int64_t j = save.done; j < save.done + n; ++j)
                for (int c = 0; c < save.dst->numChannels; ++c) {
                    const float* f = mem_.frame(j);
                    save.dst->channel(c)[j] = f ? f[std::min(c, channels_ - 1)] : 0.0f;
                }
            save.done += n;
            if (save.done >= save.frames) {
                queueHandBack(save.dst, true);
                save = SaveJob{};
            }
        }
    }
}

bool Looper::startSave(BufferData* dst) noexcept {
    if (!dst) return false;
    for (SaveJob& save : saves_)
        if (!save.dst) {
            save = SaveJob{dst, 0, 0, false};
            return true;
        }
    return false;
}

} // namespace loopd
