#pragma once
// Look-ahead brick-wall limiter with linked channels.
//
// Contract: |output| <= ceiling for every sample, including +20 dB overs and NaN input (NaN is
// output as 0), and the limiter is a pure delay of latencySamples() when the input peak stays
// below the ceiling. Method: the gain each input sample needs (ceiling / peak) is min-held over
// the look-ahead window (exactly, by van Herk/Gil-Werman chunks), released exponentially, then
// averaged over the same window; since every value in that average is at or below the need of
// the sample leaving the delay line, the output cannot exceed the ceiling. A final clamp only
// guards against rounding.
//
// Work is done in runs of up to kRun frames, in three passes: the needs of the run (every
// channel, vectorised), the gains (one serial pass: the sliding minimum, the release and the box
// average), then the delay and the gains applied (vectorised). The release is kept as its distance
// from 1 (gap = 1 - released, which decays by a factor each sample), so the serial chain from one
// sample to the next is one multiply and one max.
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
    static constexpr int kRun = 256;
    int numChannels_ = 0;
    int window_ = 1;
    float ceiling_ = 1.0f;
    double releaseKeep_ = 1.0;     // the share of the gap to 1 left after one sample of release
    // Per channel, a line of window_ - 1 + kRun samples: the last window_ - 1 inputs (oldest
    // first), then the run being processed. The output of run frame i is line[i].
    std::vector<float> lines_;
    // Sliding minimum of the required gain (van Herk / Gil-Werman): the needs of the current
    // chunk of w samples, their running minimum, and the minima from each position of the last
    // complete chunk to its end (w + 1 values, the last 1).
    std::vector<float> chunkNeed_;
    std::vector<float> suffixMin_;
    int chunkPos_ = 0;
    float prefixMin_ = 1.0f;
    double gap_ = 0.0;             // 1 - the released gain (in double: over a release of
                                   // thousands of samples, float's rounding of the factor adds up)
    std::vector<float> box_;       // the last w released gains
    int boxPos_ = 0;
    double boxSum_ = 0.0;
    int sinceResum_ = 0;
    float minGainSeen_ = 1.0f;
    // At rest: the released gain has been 1 for a whole window (every value in the box and of the
    // sliding minimum is 1, the delay line holds nothing over the ceiling). A run that stays at or
    // under the ceiling then only passes through the delay line.
    bool atRest_ = true;
    bool restShortcut_ = true;
    size_t lineSize() const noexcept { return static_cast<size_t>(window_ - 1 + kRun); }
    void processRun(float* const* channels, int offset, int numFrames) noexcept;
    // The line's first n samples to the output, times gain[i] (nullptr: 1), and the line moved on.
    void delayedOut(float* const* channels, int offset, int n, const float* gain) noexcept;
    // The gains of a run; returns the smallest.
    float gains(const float* need, float* gain, int numFrames) noexcept;
};

} // namespace loopd::dsp
