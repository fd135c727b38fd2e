#pragma once
// A fixed-capacity delay line read with 4-point Hermite interpolation (exact at whole-sample
// delays). Sized once by prepare(); write/read never allocate. Copying is deleted.
#include <cmath>
#include <vector>

#include "dsp/Interpolate.h"

namespace loopd::dsp {

class DelayLine {
public:
    DelayLine() = default;
    DelayLine(const DelayLine&) = delete;
    DelayLine& operator=(const DelayLine&) = delete;
    DelayLine(DelayLine&&) = default;
    DelayLine& operator=(DelayLine&&) = default;

    // [control] Capacity in samples (longest delay + 4).
    void prepare(int maxDelaySamples) {
        size_ = 1;
        while (size_ < maxDelaySamples + 4) size_ <<= 1;
        buffer_.assign(static_cast<size_t>(size_), 0.0f);
        mask_ = size_ - 1;
        write_ = 0;
    }
    void reset() noexcept { std::fill(buffer_.begin(), buffer_.end(), 0.0f); write_ = 0; }
    int maxDelay() const noexcept { return size_ - 4; }

    // [audio] The sample written `delaySamples` ago (>= 1; fractional allowed).
    float read(double delaySamples) const noexcept {
        const double pos = static_cast<double>(write_) - delaySamples;
        const double fl = std::floor(pos);
        const auto i0 = static_cast<int>(static_cast<long long>(fl) & mask_);
        const float frac = static_cast<float>(pos - fl);
        if (frac == 0.0f) return buffer_[static_cast<size_t>(i0)];
        const Hermite4Weights w(frac);
        return w.wm1 * at(i0 - 1) + w.w0 * at(i0) + w.w1 * at(i0 + 1) + w.w2 * at(i0 + 2);
    }
    // [audio] Append one sample.
    void write(float x) noexcept {
        buffer_[static_cast<size_t>(write_)] = x;
        write_ = (write_ + 1) & mask_;
    }

private:
    float at(int i) const noexcept { return buffer_[static_cast<size_t>(i & mask_)]; }
    std::vector<float> buffer_;
    int size_ = 0, mask_ = 0, write_ = 0;
};

} // namespace loopd::dsp
