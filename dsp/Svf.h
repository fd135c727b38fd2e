#pragma once
// State-variable filter in the topology-preserving (trapezoidal) form: stable for any cutoff
// below Nyquist and under per-sample modulation, so sweeps at high resonance stay bounded.
// Low-pass and high-pass have unity gain in their pass bands; band-pass has unity gain at the
// centre. q = 0.7071 gives Butterworth low/high-pass responses (-3 dB at the cutoff).
#include <algorithm>
#include <cmath>

namespace loopd::dsp {

class Svf {
public:
    struct Outputs { double low, band, high; };

    // [audio] Coefficients for cutoffHz (clamped to 5 Hz .. 0.49 sr) and q (>= 0.1).
    void setCutoff(double cutoffHz, double q, double sampleRate) noexcept {
        const double fc = std::clamp(cutoffHz, 5.0, 0.49 * sampleRate);
        g_ = std::tan(M_PI * fc / sampleRate);
        k_ = 1.0 / std::max(0.1, q);
        a1_ = 1.0 / (1.0 + g_ * (g_ + k_));
        a2_ = g_ * a1_;
        a3_ = g_ * a2_;
    }
    void reset() noexcept { ic1_ = ic2_ = 0.0; }
    Outputs process(double x) noexcept {
        const double v3 = x - ic2_;
        const double v1 = a1_ * ic1_ + a2_ * v3;
        const double v2 = ic2_ + a2_ * ic1_ + a3_ * v3;
        ic1_ = 2.0 * v1 - ic1_;
        ic2_ = 2.0 * v2 - ic2_;
        return {v2, k_ * v1, x - k_ * v1 - v2};
    }

private:
    double g_ = 0.0, k_ = 1.4142, a1_ = 1.0, a2_ = 0.0, a3_ = 0.0;
    double ic1_ = 0.0, ic2_ = 0.0;
};

// Low-frequency oscillator shapes over a phase in [0, 1): output in [-1, 1].
enum class LfoShape { Sine = 0, Triangle = 1, Square = 2, Saw = 3 };

inline double lfoValue(LfoShape shape, double phase) noexcept {
    switch (shape) {
    case LfoShape::Sine: return std::sin(2.0 * M_PI * phase);
    case LfoShape::Triangle: return phase < 0.25 ? 4.0 * phase : phase < 0.75 ? 2.0 - 4.0 * phase : 4.0 * phase - 4.0;
    case LfoShape::Square: {
        // Band-limited edges (2 % of the cycle) so that the cutoff never jumps.
        const double e = 0.02;
        if (phase < e) return phase / e;
        if (phase < 0.5 - e) return 1.0;
        if (phase < 0.5 + e) return 1.0 - (phase - (0.5 - e)) / e;
        if (phase < 1.0 - e) return -1.0;
        return -1.0 + (phase - (1.0 - e)) / e;
    }
    case LfoShape::Saw: return phase < 0.98 ? 2.0 * phase / 0.98 - 1.0 : 1.0 - 2.0 * (phase - 0.98) / 0.02;
    }
    return 0.0;
}

} // namespace loopd::dsp
