#pragma once
// Stereo reverb with the Schroeder–Moorer structure popularised by Freeverb: per channel eight
// parallel feedback combs with one-pole damping in the loop, then four series all-passes; the
// right channel's delays are 23 samples longer for width. `room` (0..1) sets the comb feedback
// (0.70 .. 0.98: decay from about half a second to several seconds), `damping` (0..1) how fast
// high frequencies die. Wet output only; the node mixes it with the dry signal.
#include <array>
#include <cstddef>
#include <vector>

namespace loopd::dsp {

class Reverb {
public:
    // [control] May allocate.
    void prepare(double sampleRate);
    // [audio]
    void reset() noexcept;
    void setRoom(float room) noexcept;
    void setDamping(float damping) noexcept;
    // [audio] One stereo frame in, the wet frame out.
    void process(float inLeft, float inRight, float& outLeft, float& outRight) noexcept;

private:
    struct Comb {
        std::vector<float> buf;
        std::size_t pos = 0;
        float store = 0.0f;
    };
    struct AllPass {
        std::vector<float> buf;
        std::size_t pos = 0;
    };
    static constexpr int kCombs = 8, kAllPasses = 4;
    std::array<Comb, kCombs> combL_, combR_;
    std::array<AllPass, kAllPasses> apL_, apR_;
    float feedback_ = 0.84f, damp_ = 0.2f;
};

} // namespace loopd::dsp
