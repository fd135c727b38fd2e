#include "dsp/Limiter.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace loopd::dsp {

void Limiter::prepare(double sampleRate, int numChannels, const Settings& settings) {
    numChannels_ = std::max(1, numChannels);
    window_ = std::max(1, static_cast<int>(std::lround(settings.lookaheadSeconds * sampleRate)));
    ceiling_ = std::pow(10.0f, settings.ceilingDb / 20.0f);
    releaseCoef_ = static_cast<float>(1.0 - std::exp(-1.0 / (std::max(1e-4f, settings.releaseSeconds) * sampleRate)));
    delay_.assign(static_cast<size_t>(numChannels_ * window_), 0.0f);
    chunkNeed_.assign(static_cast<size_t>(window_), 1.0f);
    suffixMin_.assign(static_cast<size_t>(window_) + 1, 1.0f);
    box_.assign(static_cast<size_t>(window_), 1.0f);
    reset();
}

void Limiter::reset() noexcept {
    std::fill(delay_.begin(), delay_.end(), 0.0f);
    std::fill(box_.begin(), box_.end(), 1.0f);
    delayPos_ = 0;
    std::fill(chunkNeed_.begin(), chunkNeed_.end(), 1.0f);
    std::fill(suffixMin_.begin(), suffixMin_.end(), 1.0f);
    chunkPos_ = 0;
    prefixMin_ = 1.0f;
    released_ = 1.0f;
    boxPos_ = 0;
    boxSum_ = window_;
    sinceResum_ = 0;
    minGainSeen_ = 1.0f;
    onesRun_ = window_;
}

bool Limiter::underCeiling(float* const* channels, int offset, int numFrames) const noexcept {
    // NaN and infinities fail the comparison: they take the long way (which zeroes them).
    int ok = 1;
    for (int c = 0; c < numChannels_; ++c) {
        const float* x = channels[c] + offset;
        for (int i = 0; i < numFrames; ++i) ok &= static_cast<int>(std::fabs(x[i]) <= ceiling_);
    }
    return ok != 0;
}

void Limiter::restThrough(float* const* channels, int offset, int numFrames) noexcept {
    // What the long way does at rest, sample for sample: every need is 1, so the gain stays 1
    // and the output is the input w-1 samples ago.
    const int w = window_;
    if (w > 1)
        for (int c = 0; c < numChannels_; ++c) {
            float* line = &delay_[static_cast<size_t>(c * w)];
            float* x = channels[c] + offset;
            int pos = delayPos_;
            for (int i = 0; i < numFrames; ++i) {
                line[pos] = x[i];
                pos = pos + 1 == w ? 0 : pos + 1;
                x[i] = line[pos];
            }
        }
    delayPos_ = static_cast<int>((delayPos_ + numFrames) % w);
    boxPos_ = static_cast<int>((boxPos_ + numFrames) % w);
    boxSum_ = w; // every value in the box is 1
    sinceResum_ = 0;
    // The sliding minimum: only the chunk position moves. At rest (w gains of 1 in a row, so the
    // held need was 1 for w samples: the last 2w - 1 needs are all 1) chunkNeed_ (the last w
    // needs) and suffixMin_ (from the last complete chunk, which began at most 2w - 1 samples
    // ago) hold only ones already, and the needs passed here are 1 too.
    chunkPos_ = static_cast<int>((chunkPos_ + numFrames) % w);
    prefixMin_ = 1.0f;
}

void Limiter::process(float* const* channels, int offset, int numFrames) noexcept {
    const int w = window_;
    if (restShortcut_ && onesRun_ >= w && numFrames > 0 && underCeiling(channels, offset, numFrames)) {
        restThrough(channels, offset, numFrames);
        return;
    }
    // The state lives in locals through the loop (the channel pointers could alias the members,
    // so the compiler would otherwise store them back every sample).
    const auto wrap = [](int v, int n) noexcept { return v >= n ? v - n : v; };
    float* const chunkNeed = chunkNeed_.data();
    float* const suffixMin = suffixMin_.data();
    float* const box = box_.data();
    float* const delay = delay_.data();
    const int nc = numChannels_;
    const float ceiling = ceiling_, releaseCoef = releaseCoef_;
    int chunkPos = chunkPos_, boxPos = boxPos_, delayPos = delayPos_;
    int onesRun = onesRun_, sinceResum = sinceResum_;
    float prefixMin = prefixMin_, released = released_, minGainSeen = minGainSeen_;
    double boxSum = boxSum_;
    for (int i = offset; i < offset + numFrames; ++i) {
        // 1. Required gain of the incoming sample.
        float peak = 0.0f;
        for (int c = 0; c < nc; ++c) {
            float x = channels[c][i];
            if (!std::isfinite(x)) { x = 0.0f; channels[c][i] = 0.0f; }
            peak = std::max(peak, std::fabs(x));
        }
        const float need = peak > ceiling ? ceiling / peak : 1.0f;

        // 2. Minimum need over the last w samples, without branches (van Herk / Gil-Werman):
        // the stream is cut into chunks of w; the window ending at position p of this chunk is
        // positions 0..p of this chunk (their running minimum) and p+1..w-1 of the last one
        // (the minimum from p+1 to its end, worked out when it was complete).
        chunkNeed[chunkPos] = need;
        prefixMin = std::min(prefixMin, need);
        const float held = std::min(prefixMin, suffixMin[chunkPos + 1]);
        if (++chunkPos == w) {
            float m = 1.0f;
            for (int k = w - 1; k >= 0; --k) suffixMin[k] = m = std::min(m, chunkNeed[k]);
            chunkPos = 0;
            prefixMin = 1.0f;
        }

        // 3. Release towards 1, never above the held need.
        released = std::min(held, released + (1.0f - released) * releaseCoef);
        onesRun = released == 1.0f ? std::min(onesRun + 1, w) : 0;

        // 4. Box average over the window.
        boxSum += static_cast<double>(released) - box[boxPos];
        box[boxPos] = released;
        boxPos = wrap(boxPos + 1, w);
        if (++sinceResum >= 8192) {
            sinceResum = 0;
            double s = 0.0;
            for (int k = 0; k < w; ++k) s += box[k];
            boxSum = s;
        }
        const float gain = std::min(1.0f, static_cast<float>(boxSum / w));
        minGainSeen = std::min(minGainSeen, gain);

        // 5. Delay by w-1 samples and apply.
        const int oldest = wrap(delayPos + 1, w); // oldest of the w stored = w-1 samples ago
        for (int c = 0; c < nc; ++c) {
            float* line = delay + static_cast<ptrdiff_t>(c) * w;
            const float in = channels[c][i];
            float out;
            if (w == 1) {
                out = in;
            } else {
                line[delayPos] = in;
                out = line[oldest];
            }
            out *= gain;
            channels[c][i] = std::clamp(out, -ceiling, ceiling);
        }
        delayPos = wrap(delayPos + 1, w);
    }
    chunkPos_ = chunkPos; boxPos_ = boxPos; delayPos_ = delayPos;
    onesRun_ = onesRun; sinceResum_ = sinceResum;
    prefixMin_ = prefixMin; released_ = released; minGainSeen_ = minGainSeen; boxSum_ = boxSum;
}

} // namespace loopd::dsp
