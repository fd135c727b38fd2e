#pragma once
// Linear parameter ramp: the de-click smoother every control value goes through.
// All methods are [audio]-safe: no allocation, no locks.
#include <cstdint>

namespace loopd::dsp {

class LinearRamp {
public:
    // [any] Jump to a value at once (used at construction and reset()).
    void reset(float value) noexcept { value_ = target_ = value; step_ = 0.0; remaining_ = 0; hold_ = false; }

    // [audio] Move to `target` over `numSamples` samples (0 = jump). By default the first
    // sample already takes the first step and the n-th is the target (a fade-in sounds at once).
    // `holdFirst`: the first sample keeps the current value and the target is reached n samples
    // later, as a continuous ramp from t to t + duration sampled at both ends (/n_ramp, /fade).
    void setTarget(float target, int64_t numSamples, bool holdFirst = false) noexcept {
        target_ = target;
        if (numSamples <= 0) { value_ = target; remaining_ = 0; step_ = 0.0; hold_ = false; return; }
        remaining_ = numSamples;
        step_ = (static_cast<double>(target) - value_) / static_cast<double>(numSamples);
        hold_ = holdFirst;
    }

    // [audio] Advance one sample and return its value: after setTarget(t, n) the n-th call
    // returns exactly t, the first returns one step away from the start.
    float next() noexcept {
        if (remaining_ == 0) return static_cast<float>(value_);
        if (hold_) { hold_ = false; return static_cast<float>(value_); }
        value_ += step_;
        if (--remaining_ == 0) value_ = target_;
        return static_cast<float>(value_);
    }

    // [audio] Advance n samples without reading them.
    void skip(int64_t n) noexcept {
        if (remaining_ == 0 || n <= 0) return;
        if (hold_) { hold_ = false; if (--n == 0) return; }
        if (n >= remaining_) { value_ = target_; remaining_ = 0; return; }
        value_ += step_ * static_cast<double>(n);
        remaining_ -= n;
    }

    bool ramping() const noexcept { return remaining_ != 0; }
    float value() const noexcept { return static_cast<float>(value_); }
    float target() const noexcept { return target_; }
    int64_t remaining() const noexcept { return remaining_; }

private:
    double value_ = 0.0;
    double step_ = 0.0;
    float target_ = 0.0f;
    int64_t remaining_ = 0;
    bool hold_ = false;
};

} // namespace loopd::dsp
