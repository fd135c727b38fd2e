#pragma once
// Sample interpolation. 4-point, 3rd-order Hermite (Catmull-Rom): at frac == 0 it returns x0
// exactly, so integer read positions reproduce the source bit for bit.
namespace loopd::dsp {

// [any] xm1, x0, x1, x2 are the samples at positions -1, 0, 1, 2; 0 <= frac < 1.
inline float hermite4(float frac, float xm1, float x0, float x1, float x2) noexcept {
    const float c1 = 0.5f * (x1 - xm1);
    const float c2 = xm1 - 2.5f * x0 + 2.0f * x1 - 0.5f * x2;
    const float c3 = 0.5f * (x2 - xm1) + 1.5f * (x0 - x1);
    return ((c3 * frac + c2) * frac + c1) * frac + x0;
}

// The same interpolator as four weights of the taps at -1, 0, 1, 2, computed once per output
// frame and shared by every channel. At frac == 0 the weights are exactly {0, 1, 0, 0}.
struct Hermite4Weights {
    float wm1, w0, w1, w2;
    explicit Hermite4Weights(float t) noexcept {
        const float t2 = t * t, t3 = t2 * t;
        wm1 = -0.5f * t3 + t2 - 0.5f * t;
        w0 = 1.5f * t3 - 2.5f * t2 + 1.0f;
        w1 = -1.5f * t3 + 2.0f * t2 + 0.5f * t;
        w2 = 0.5f * t3 - 0.5f * t2;
    }
    float operator()(const float* x) const noexcept { // x points at tap 0
        return wm1 * x[-1] + w0 * x[0] + w1 * x[1] + w2 * x[2];
    }
};

} // namespace loopd::dsp
