#include "dsp/Eq3Isolator.h"

#include <algorithm>
#include <cmath>

namespace loopd::dsp {
namespace {
// Quality factors of the two sections of a 4th-order Butterworth filter.
constexpr double kQ[2] = {0.54119610014619698, 1.3065629648763766};
} // namespace

void Eq3Isolator::prepare(double sampleRate, int numChannels, const Settings& s) {
    channels_.assign(static_cast<size_t>(std::max(1, numChannels)), Channel{});
    using T = BiquadCoefficients::Type;
    for (Channel& c : channels_) {
        for (int k = 0; k < kSections; ++k) {
            const double q = kQ[k % 2];
            c.lp1[static_cast<size_t>(k)].setCoefficients(BiquadCoefficients::design(T::LowPass, s.lowHz, q, sampleRate));
            c.hp1[static_cast<size_t>(k)].setCoefficients(BiquadCoefficients::design(T::HighPass, s.lowHz, q, sampleRate));
            c.lp2[static_cast<size_t>(k)].setCoefficients(BiquadCoefficients::design(T::LowPass, s.highHz, q, sampleRate));
            c.hp2[static_cast<size_t>(k)].setCoefficients(BiquadCoefficients::design(T::HighPass, s.highHz, q, sampleRate));
        }
        for (int k = 0; k < 2; ++k)
            c.ap2[static_cast<size_t>(k)].setCoefficients(BiquadCoefficients::design(T::AllPass, s.highHz, kQ[k], sampleRate));
    }
    rampSamples_ = std::max<int64_t>(1, static_cast<int64_t>(std::lround(s.rampSeconds * sampleRate)));
    for (auto& g : gains_) g.reset(1.0f);
    reset();
}

void Eq3Isolator::reset() noexcept {
    for (Channel& c : channels_) {
        for (auto* bank : {&c.lp1, &c.hp1, &c.lp2, &c.hp2})
            for (Biquad& b : *bank) b.reset();
        for (Biquad& b : c.ap2) b.reset();
    }
}

void Eq3Isolator::setGain(Band band, float gain, int64_t rampSamples) noexcept {
    gains_[band].setTarget(gain, rampSamples < 0 ? rampSamples_ : rampSamples, rampSamples >= 0);
}
void Eq3Isolator::setGainNow(Band band, float gain) noexcept { gains_[band].reset(gain); }

void Eq3Isolator::process(float* const* channels, int numChannels, int offset, int numFrames, const float* wet) noexcept {
    const int nc = std::min(numChannels, static_cast<int>(channels_.size()));
    for (int i = offset; i < offset + numFrames; ++i) {
        const float gl = gains_[Low].next(), gm = gains_[Mid].next(), gh = gains_[High].next();
        const float w = wet[i - offset];
        for (int c = 0; c < nc; ++c) {
            Channel& ch = channels_[static_cast<size_t>(c)];
            const double x = channels[c][i];
            double low = x, rest = x;
            for (Biquad& b : ch.lp1) low = b.process(low);
            for (Biquad& b : ch.hp1) rest = b.process(rest);
            double mid = rest, high = rest;
            for (Biquad& b : ch.lp2) mid = b.process(mid);
            for (Biquad& b : ch.hp2) high = b.process(high);
            for (Biquad& b : ch.ap2) low = b.process(low);
            const double y = gl * low + gm * mid + gh * high;
            channels[c][i] = static_cast<float>(x + w * (y - x));
        }
    }
}

} // namespace loopd::dsp
