#pragma once
// Onsets of a mono stream: aubio's default detector (high-frequency content over a 512-sample
// window, 128-sample hop, at most one onset per 50 ms, aubio's own delay compensation for the
// onset's sample). Drum hits are found within 2.8 ms of their sample; pure tone clicks are not.
// Used by the live analysis and the buffer analysis.
//
// Threads: not the audio thread (aubio allocates); one thread at a time.
#include <cstdint>
#include <memory>
#include <vector>

namespace loopd {

class OnsetDetector {
public:
    static constexpr int kHop = 128;
    explicit OnsetDetector(double sampleRate);
    ~OnsetDetector();
    OnsetDetector(const OnsetDetector&) = delete;
    OnsetDetector& operator=(const OnsetDetector&) = delete;

    struct Onset { int64_t sample; double strength; }; // sample: from the first one pushed
    // Any number of samples; the onsets they complete are appended to `out`.
    void push(const float* x, int n, std::vector<Onset>& out);

private:
    struct Aubio; // the detector and its hop buffers
    std::unique_ptr<Aubio> aubio_;
    int filled_ = 0;
};

} // namespace loopd
