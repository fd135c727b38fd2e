#pragma once
// The varispeed reader's inner loop: a run of output frames read from a buffer at a constant
// rate with 4-point Hermite interpolation (dsp/Interpolate.h), added into one or two outputs.
//
// Positions are not accumulated frame by frame (that carries a dependency through every frame
// and cannot vectorise): the position of step s after an anchor is computed from the anchor,
//     t = anchorFrac + s * rateFrac,   index = anchorIndex + s * rateWhole + trunc(t),
// so every lane of a SIMD register finds its own, and the result is the same whichever way the
// frames are split into runs and blocks (time invariance). The scalar version and the SIMD ones
// do the same IEEE operations in the same order (no fused multiply-add): their output is equal
// bit for bit.
//
// Threads: [audio] (no allocation, no locks); the ISA is picked once, at static initialisation.
#include <cstdint>

namespace loopd::dsp {

// Steps after an anchor before the reader takes a new one (at that exact step, so the output
// does not depend on block sizes): keeps t below 2^31 for the 32-bit truncations.
inline constexpr int64_t kVarispeedRebaseSteps = int64_t{1} << 30;

struct VarispeedRun {
    // Sources: one (mono) or two (stereo) channels, each read at the same positions.
    const float* src[2] = {nullptr, nullptr};
    int sources = 1;
    // Outputs: mono → dst[0] += gain[0]*s (and dst[1] += gain[1]*s when dst[1] is set);
    // stereo → dst[c] += gain[c]*s_c.
    float* dst[2] = {nullptr, nullptr};
    float gain[2] = {1.0f, 1.0f};
    // The read position of frame 0 of the run: `index` is its whole part; the fractional part
    // and the following positions come from the anchor.
    int64_t index = 0;
    double anchorFrac = 0.0;  // [0, 1)
    int64_t steps = 0;        // steps from the anchor to frame 0 (< kVarispeedRebaseSteps)
    double rateFrac = 0.0;    // rate - floor(rate), [0, 1)
    int64_t rateWhole = 0;    // floor(rate)
    int frames = 0;           // steps + frames <= kVarispeedRebaseSteps
};

enum class VarispeedIsa { Scalar, Sse2, Avx2 };

// [any] The t of step `s` after the anchor, and its split (the same operations as every kernel).
inline double varispeedT(double anchorFrac, int64_t s, double rateFrac) noexcept {
    return anchorFrac + static_cast<double>(s) * rateFrac;
}
inline int64_t varispeedWhole(double t) noexcept { return static_cast<int32_t>(t); } // t >= 0: floor

// [audio] Reads and mixes one run. Every tap (index - 1 .. last index + 2) must lie inside the
// sources (the caller runs only the interior frames through here).
void varispeedRun(const VarispeedRun& run) noexcept;
// [any] The kernel in use; [control/tests] force one (Scalar is always there; a SIMD one the
// CPU lacks is refused, returning false).
VarispeedIsa varispeedIsa() noexcept;
bool setVarispeedIsa(VarispeedIsa isa) noexcept;
const char* varispeedIsaName(VarispeedIsa isa) noexcept;

} // namespace loopd::dsp
