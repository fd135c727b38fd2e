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

} // namespace loopd::dsp
