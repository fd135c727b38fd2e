#pragma once
// Second-order IIR section (transposed direct form II) with RBJ cookbook designs.
#include <cmath>

namespace loopd::dsp {

struct BiquadCoefficients {
    double b0 = 1, b1 = 0, b2 = 0, a1 = 0, a2 = 0;

    enum class Type { LowPass, HighPass, AllPass, BandPass };
    // [any] RBJ design at cutoffHz with quality q.
    static BiquadCoefficients design(Type type, double cutoffHz, double q, double sampleRate) noexcept {
        const double w = 2.0 * M_PI * cutoffHz / sampleRate;
        const double cw = std::cos(w), sw = std::sin(w);
        const double alpha = sw / (2.0 * q);
        const double a0 = 1.0 + alpha;
        BiquadCoefficients c;
        switch (type) {
        case Type::LowPass: c.b0 = (1 - cw) / 2; c.b1 = 1 - cw; c.b2 = (1 - cw) / 2; break;
        case Type::HighPass: c.b0 = (1 + cw) / 2; c.b1 = -(1 + cw); c.b2 = (1 + cw) / 2; break;
        case Type::AllPass: c.b0 = 1 - alpha; c.b1 = -2 * cw; c.b2 = 1 + alpha; break;
        case Type::BandPass: c.b0 = alpha; c.b1 = 0; c.b2 = -alpha; break;
        }
        c.b0 /= a0; c.b1 /= a0; c.b2 /= a0;
        c.a1 = -2 * cw / a0;
        c.a2 = (1 - alpha) / a0;
        return c;
    }
};

// One channel's state; [audio] process() never allocates.
class Biquad {
public:
    void setCoefficients(const BiquadCoefficients& c) noexcept { c_ = c; }
    void reset() noexcept { z1_ = z2_ = 0.0; }
    double process(double x) noexcept {
        const double y = c_.b0 * x + z1_;
        z1_ = c_.b1 * x - c_.a1 * y + z2_;
        z2_ = c_.b2 * x - c_.a2 * y;
        return y;
    }

private:
    BiquadCoefficients c_;
    double z1_ = 0.0, z2_ = 0.0;
};

} // namespace loopd::dsp
