#pragma once
// DJ three-band isolator. Linkwitz-Riley 8th-order crossovers (each a 4th-order Butterworth
// squared, 48 dB/octave) at lowHz and highHz split the signal into low / mid / high; the low band
// also passes the high crossover's all-pass, so that at unity gains the three bands sum to an
// all-pass: a flat magnitude response. A killed band (gain 0) falls by 70 dB or more in its middle.
// Gains are linear and smoothed per sample (linear ramps of rampSeconds).
#include <array>
#include <vector>

#include "dsp/Biquad.h"
#include "dsp/Ramp.h"

namespace loopd::dsp {

class Eq3Isolator {
public:
    struct Settings {
        double lowHz = 250.0;
        double highHz = 2500.0;
        double rampSeconds = 0.02;
    };
    enum Band { Low = 0, Mid = 1, High = 2 };

    // [control] May allocate.
    void prepare(double sampleRate, int numChannels, const Settings& settings);
    // [audio]
    void reset() noexcept;
    void setGain(Band band, float gain, int64_t rampSamples = -1) noexcept; // -1: the default ramp; else an explicit ramp
    void setGainNow(Band band, float gain) noexcept;
    float gain(Band band) const noexcept { return gains_[band].target(); }
    // [audio] In place on channels[c][offset .. offset+numFrames); wet[k] (0..1) for frame
    // offset+k mixes the processed signal over the dry one (click-free insertion, removal, bypass).
    void process(float* const* channels, int numChannels, int offset, int numFrames, const float* wet) noexcept;

private:
    static constexpr int kSections = 4; // LR8 = two 4th-order Butterworth filters in series
    struct Channel {
        std::array<Biquad, kSections> lp1, hp1, lp2, hp2;
        std::array<Biquad, 2> ap2;
    };
    std::vector<Channel> channels_;
    std::array<LinearRamp, 3> gains_;
    int64_t rampSamples_ = 960;
};

} // namespace loopd::dsp
