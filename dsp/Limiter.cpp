#include "dsp/Limiter.h"

#include <algorithm>
#include <cmath>

namespace loopd::dsp {

void Limiter::prepare(double sampleRate, int numChannels, const Settings& settings) {
    numChannels_ = std::max(1, numChannels);
    window_ = std::max(1, static_cast<int>(std::lround(settings.lookaheadSeconds * sampleRate)));
    ceiling_ = std::pow(10.0f, settings.ceilingDb / 20.0f);
    releaseCoef_ = static_cast<float>(1.0 - std::exp(-1.0 / (std::max(1e-4f, settings.releaseSeconds) * sampleRate)));
    delay_.assign(static_cast<size_t>(numChannels_ * window_), 0.0f);
    dqValue_.assign(static_cast<size_t>(window_), 1.0f);
    dqIndex_.assign(static_cast<size_t>(window_), 0);
    box_.assign(static_cast<size_t>(window_), 1.0f);
    reset();
}

void Limiter::reset() noexcept {
    std::fill(delay_.begin(), delay_.end(), 0.0f);
    std::fill(box_.begin(), box_.end(), 1.0f);
    delayPos_ = 0;
    dqHead_ = dqSize_ = 0;
    sampleIndex_ = 0;
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
    sampleIndex_ += numFrames;
    boxSum_ = w; // every value in the box is 1
    sinceResum_ = 0;
    dqHead_ = 0; // the sliding minimum: only the newest need (1) is left
    dqSize_ = 1;
    dqValue_[0] = 1.0f;
    dqIndex_[0] = sampleIndex_ - 1;
}

void Limiter::process(float* const* channels, int offset, int numFrames) noexcept {
    const int w = window_;
    if (restShortcut_ && onesRun_ >= w && numFrames > 0 && underCeiling(channels, offset, numFrames)) {
        restThrough(channels, offset, numFrames);
        return;
    }
    for (int i = offset; i < offset + numFrames; ++i) {
        // 1. Required gain of the incoming sample.
        float peak = 0.0f;
        for (int c = 0; c < numChannels_; ++c) {
            float x = channels[c][i];
            if (!std::isfinite(x)) { x = 0.0f; channels[c][i] = 0.0f; }
            peak = std::max(peak, std::fabs(x));
        }
        const float need = peak > ceiling_ ? ceiling_ / peak : 1.0f;

        // 2. Sliding minimum over the last w needs (monotonic deque in a ring).
        while (dqSize_ > 0) {
            const int back = (dqHead_ + dqSize_ - 1) % w;
            if (dqValue_[back] >= need) --dqSize_; else break;
        }
        {
            const int slot = (dqHead_ + dqSize_) % w;
            dqValue_[slot] = need;
            dqIndex_[slot] = sampleIndex_;
            ++dqSize_;
        }
        while (dqIndex_[dqHead_] <= sampleIndex_ - w) { dqHead_ = (dqHead_ + 1) % w; --dqSize_; }
        const float held = dqValue_[dqHead_];

        // 3. Release towards 1, never above the held need.
        released_ = std::min(held, released_ + (1.0f - released_) * releaseCoef_);
        onesRun_ = released_ == 1.0f ? std::min(onesRun_ + 1, w) : 0;

        // 4. Box average over the window.
        boxSum_ += static_cast<double>(released_) - box_[boxPos_];
        box_[boxPos_] = released_;
        boxPos_ = boxPos_ + 1 == w ? 0 : boxPos_ + 1;
        if (++sinceResum_ >= 8192) {
            sinceResum_ = 0;
            double s = 0.0;
            for (float v : box_) s += v;
            boxSum_ = s;
        }
        const float gain = std::min(1.0f, static_cast<float>(boxSum_ / w));
        minGainSeen_ = std::min(minGainSeen_, gain);

        // 5. Delay by w-1 samples and apply.
        for (int c = 0; c < numChannels_; ++c) {
            float* line = &delay_[static_cast<size_t>(c * w)];
            const float in = channels[c][i];
            float out;
            if (w == 1) {
                out = in;
            } else {
                line[delayPos_] = in;
                out = line[(delayPos_ + 1) % w]; // oldest of the w stored = w-1 samples ago
            }
            out *= gain;
            channels[c][i] = std::clamp(out, -ceiling_, ceiling_);
        }
        delayPos_ = delayPos_ + 1 == w ? 0 : delayPos_ + 1;
        ++sampleIndex_;
    }
}

} // namespace loopd::dsp
