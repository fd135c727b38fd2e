#pragma once
// Pan laws. Mono sources use constant power (-3 dB at the centre, each side 0 dB at its extreme);
// stereo sources and buses use balance (0 dB at the centre, the far side fades linearly to 0).
#include <algorithm>
#include <cmath>

namespace loopd::dsp {

struct StereoGains { float left; float right; };

// [any] pan in [-1, 1].
inline StereoGains constantPowerPan(float pan) noexcept {
    const float p = std::clamp(pan, -1.0f, 1.0f);
    // sin on both sides makes each side exactly 0 at the opposite extreme.
    constexpr float quarterPi = 0.25f * 3.14159265358979f;
    return {std::sin((1.0f - p) * quarterPi), std::sin((1.0f + p) * quarterPi)};
}

// [any] pan in [-1, 1].
inline StereoGains balance(float pan) noexcept {
    const float p = std::clamp(pan, -1.0f, 1.0f);
    return {std::min(1.0f, 1.0f - p), std::min(1.0f, 1.0f + p)};
}

inline float dbToGain(float gainDb) noexcept { return std::pow(10.0f, gainDb / 20.0f); }
inline float gainToDb(float gain) noexcept { return 20.0f * std::log10(std::max(gain, 1e-12f)); }

} // namespace loopd::dsp
