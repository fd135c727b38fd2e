#pragma once
// Look-ahead brick-wall limiter with linked channels.
//
// Contract: |output| <= ceiling for every sample, including +20 dB overs and NaN input (NaN is
// output as 0), and the limiter is a pure delay of latencySamples() when the input peak stays
// below the ceiling. Method: the gain each input sample needs (ceiling / peak) is min-held over
// the look-ahead window (exactly, by van Herk/Gil-Werman chunks), released exponentially, then
// averaged over the same window; since every value in that average is at or below the need of
// the sample leaving the delay line, the output cannot exceed the ceiling. A final clamp only guards against rounding.
#include <cmath>
#include <cstdint>
#include <vector>

namespace loopd::dsp {

class Limiter {
public:
    struct Settings {
        float ceilingDb = -0.3f;
        float lookaheadSeconds = 0.0015f;
        float releaseSeconds = 0.08f;
    };

    // [control] May allocate.
    void prepare(double sampleRate, int numChannels, const Settings& settings);
    // [audio] Clears state only.
    void reset() noexcept;
    // [audio] In place, planar: channels[c][offset .. offset+numFrames).
    void process(float* const* channels, int offset, int numFrames) noexcept;

    int latencySamples() const noexcept { return window_ - 1; }
    // [audio] New ceiling, effective from the next sample.
    void setCeilingDb(float ceilingDb) noexcept { ceiling_ = std::pow(10.0f, ceilingDb / 20.0f); }
    float ceiling() const noexcept { return ceiling_; }
    // [control] Tests: false processes every block sample by sample, as if never at rest.
    void setRestShortcut(bool on) noexcept { restShortcut_ = on; }
    // [any] Smallest gain applied since the last call (1 = no reduction); for meters.
    float takeMinGain() noexcept { const float g = minGainSeen_; minGainSeen_ = 1.0f; return g; }

    Limiter() = default;
    Limiter(const Limiter&) = delete;
    Limiter& operator=(const Limiter&) = delete;

private:
    int numChannels_ = 0;
    int window_ = 1;
    float ceiling_ = 1.0f;
    float releaseCoef_ = 0.0f;
    std::vector<float> delay_;     // numChannels_ * window_
    int delayPos_ = 0;
    // Sliding minimum of the required gain (van Herk / Gil-Werman): the needs of the current
    // chunk of w samples, their running minimum, and the minima from each position of the last
    // complete chunk to its end (w + 1 values, the last 1).
    std::vector<float> chunkNeed_;
    std::vector<float> suffixMin_;
    int chunkPos_ = 0;
    float prefixMin_ = 1.0f;
    float released_ = 1.0f;
    std::vector<float> box_;
    int boxPos_ = 0;
    double boxSum_ = 0.0;
    int sinceResum_ = 0;
    float minGainSeen_ = 1.0f;
    // At rest: the gain has been 1 for a whole window (every value in the box and of the sliding minimum is 1,
    // the delay line holds nothing over the ceiling). A block that stays at or under the ceiling
    // then only passes through the delay line (restThrough).
    int onesRun_ = 0;
    bool restShortcut_ = true;
    bool underCeiling(float* const* channels, int offset, int numFrames) const noexcept;
    void restThrough(float* const* channels, int offset, int numFrames) noexcept;
};

} // namespace loopd::dsp
