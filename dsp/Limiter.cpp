#include "dsp/Limiter.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>

namespace loopd::dsp {

void Limiter::prepare(double sampleRate, int numChannels, const Settings& settings) {
    numChannels_ = std::max(1, numChannels);
    window_ = std::max(1, static_cast<int>(std::lround(settings.lookaheadSeconds * sampleRate)));
    ceiling_ = std::pow(10.0f, settings.ceilingDb / 20.0f);
    const double coef = 1.0 - std::exp(-1.0 / (std::max(1e-4f, settings.releaseSeconds) * sampleRate));
    releaseKeep_ = 1.0 - coef;
    lines_.assign(static_cast<size_t>(numChannels_) * lineSize(), 0.0f);
    chunkNeed_.assign(static_cast<size_t>(window_), 1.0f);
    suffixMin_.assign(static_cast<size_t>(window_) + 1, 1.0f);
    box_.assign(static_cast<size_t>(window_), 1.0f);
    reset();
}

void Limiter::reset() noexcept {
    std::fill(lines_.begin(), lines_.end(), 0.0f);
    std::fill(box_.begin(), box_.end(), 1.0f);
    std::fill(chunkNeed_.begin(), chunkNeed_.end(), 1.0f);
    std::fill(suffixMin_.begin(), suffixMin_.end(), 1.0f);
    chunkPos_ = 0;
    prefixMin_ = 1.0f;
    gap_ = 0.0;
    boxPos_ = 0;
    boxSum_ = window_;
    sinceResum_ = 0;
    minGainSeen_ = 1.0f;
    atRest_ = true;
}

void Limiter::process(float* const* channels, int offset, int numFrames) noexcept {
    for (int done = 0; done < numFrames; done += kRun) processRun(channels, offset + done, std::min(kRun, numFrames - done));
}

void Limiter::processRun(float* const* channels, int offset, int n) noexcept {
    const int keep = window_ - 1;
    const size_t lineSize = this->lineSize();
    const float ceiling = ceiling_;
    // 1. Each channel's input into its line (NaN and infinities as 0), and the peak of every frame.
    float peak[kRun];
    for (int c = 0; c < numChannels_; ++c) {
        const float* __restrict x = channels[c] + offset;
        float* __restrict line = lines_.data() + static_cast<size_t>(c) * lineSize + keep;
        for (int i = 0; i < n; ++i) {
            const float a = std::fabs(x[i]);
            const bool finite = a <= std::numeric_limits<float>::max();
            line[i] = finite ? x[i] : 0.0f;
            const float p = finite ? a : 0.0f;
            peak[i] = c == 0 ? p : std::max(peak[i], p);
        }
    }
    int over = 0;
    for (int i = 0; i < n; ++i) over |= static_cast<int>(peak[i] > ceiling);

    if (restShortcut_ && atRest_ && over == 0) {
        // At rest with nothing over the ceiling: every need is 1, so the gain stays 1 and the
        // output is the input w-1 samples ago. Only the positions move: the box and the sliding
        // minimum hold only ones already (w released gains of 1 in a row mean the held need was
        // 1 for w samples: the last 2w - 1 needs are all 1), and the needs passed here are 1 too.
        delayedOut(channels, offset, n, nullptr);
        const int w = window_;
        boxPos_ = (boxPos_ + n) % w;
        boxSum_ = w;
        sinceResum_ = 0;
        chunkPos_ = (chunkPos_ + n) % w;
        prefixMin_ = 1.0f;
        gap_ = 0.0;
        return;
    }

    // 2. The need of every frame, then the gains.
    float need[kRun], gain[kRun];
    for (int i = 0; i < n; ++i) need[i] = ceiling / std::max(peak[i], ceiling); // 1 at or under the ceiling
    minGainSeen_ = std::min(minGainSeen_, gains(need, gain, n));

    // 3. The input w-1 samples ago, times the gain.
    delayedOut(channels, offset, n, gain);
}

void Limiter::delayedOut(float* const* channels, int offset, int n, const float* __restrict gain) noexcept {
    // Clamped at rest too: a ceiling lowered while at rest finds samples in the line that were
    // under the old one.
    const size_t lineSize = this->lineSize();
    const float ceiling = ceiling_;
    for (int c = 0; c < numChannels_; ++c) {
        float* __restrict y = channels[c] + offset;
        float* __restrict line = lines_.data() + static_cast<size_t>(c) * lineSize;
        if (gain)
            for (int i = 0; i < n; ++i) y[i] = std::clamp(line[i] * gain[i], -ceiling, ceiling);
        else
            for (int i = 0; i < n; ++i) y[i] = std::clamp(line[i], -ceiling, ceiling);
        std::memmove(line, line + n, static_cast<size_t>(window_ - 1) * sizeof(float));
    }
}

float Limiter::gains(const float* __restrict need, float* __restrict gain, int n) noexcept {
    // The state lives in locals through the loop (stores through the output pointer could alias
    // the members, so the compiler would otherwise write them back every sample).
    const int w = window_;
    float* const chunkNeed = chunkNeed_.data();
    float* const suffixMin = suffixMin_.data();
    float* const box = box_.data();
    const double releaseKeep = releaseKeep_;
    const double invW = 1.0 / w;
    int chunkPos = chunkPos_, boxPos = boxPos_;
    float prefixMin = prefixMin_, released = 1.0f, lowest = 1.0f;
    double gap = gap_;
    double boxSum = boxSum_;
    for (int i = 0; i < n; ++i) {
        // Minimum need over the last w samples, without branches (van Herk / Gil-Werman): the
        // stream is cut into chunks of w; the window ending at position p of this chunk is
        // positions 0..p of this chunk (their running minimum) and p+1..w-1 of the last one (the
        // minimum from p+1 to its end, worked out when it was complete).
        chunkNeed[chunkPos] = need[i];
        prefixMin = std::min(prefixMin, need[i]);
        const float held = std::min(prefixMin, suffixMin[chunkPos + 1]);
        if (++chunkPos == w) {
            float m = 1.0f;
            for (int k = w - 1; k >= 0; --k) suffixMin[k] = m = std::min(m, chunkNeed[k]);
            chunkPos = 0;
            prefixMin = 1.0f;
        }
        // Release towards 1 (the gap shrinks by a constant factor), never above the held need.
        gap = std::max(1.0 - held, gap * releaseKeep);
        released = static_cast<float>(1.0 - gap);
        // Box average over the window.
        boxSum += static_cast<double>(released) - box[boxPos];
        box[boxPos] = released;
        boxPos = boxPos + 1 == w ? 0 : boxPos + 1;
        gain[i] = std::min(1.0f, static_cast<float>(boxSum * invW));
        lowest = std::min(lowest, gain[i]);
    }
    if ((sinceResum_ += n) >= 8192) {
        sinceResum_ = 0;
        double s = 0.0;
        for (int k = 0; k < w; ++k) s += box[k];
        boxSum = s;
    }
    // At rest once the whole box is ones.
    atRest_ = released == 1.0f && std::all_of(box, box + w, [](float v) { return v == 1.0f; });
    chunkPos_ = chunkPos; boxPos_ = boxPos;
    prefixMin_ = prefixMin; gap_ = gap; boxSum_ = boxSum;
    return lowest;
}

} // namespace loopd::dsp
