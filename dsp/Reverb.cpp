#include "dsp/Reverb.h"

#include <algorithm>
#include <cmath>

namespace loopd::dsp {
namespace {
// Delay lengths in samples at 44.1 kHz (mutually prime-ish, 25..37 ms for the combs).
constexpr int kCombTuning[8] = {1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617};
constexpr int kAllPassTuning[4] = {556, 441, 341, 225};
constexpr int kStereoSpread = 23;
constexpr float kInputGain = 0.015f;
constexpr float kAllPassFeedback = 0.5f;
} // namespace

void Reverb::prepare(double sampleRate) {
    const double scale = sampleRate / 44100.0;
    auto len = [&](int n) { return static_cast<size_t>(std::max(1L, std::lround(n * scale))); };
    for (int i = 0; i < kCombs; ++i) {
        combL_[static_cast<size_t>(i)].buf.assign(len(kCombTuning[i]), 0.0f);
        combR_[static_cast<size_t>(i)].buf.assign(len(kCombTuning[i] + kStereoSpread), 0.0f);
    }
    for (int i = 0; i < kAllPasses; ++i) {
        apL_[static_cast<size_t>(i)].buf.assign(len(kAllPassTuning[i]), 0.0f);
        apR_[static_cast<size_t>(i)].buf.assign(len(kAllPassTuning[i] + kStereoSpread), 0.0f);
    }
    reset();
}

void Reverb::reset() noexcept {
    for (auto* bank : {&combL_, &combR_})
        for (Comb& c : *bank) { std::fill(c.buf.begin(), c.buf.end(), 0.0f); c.pos = 0; c.store = 0.0f; }
    for (auto* bank : {&apL_, &apR_})
        for (AllPass& a : *bank) { std::fill(a.buf.begin(), a.buf.end(), 0.0f); a.pos = 0; }
}

void Reverb::setRoom(float room) noexcept { feedback_ = 0.70f + 0.28f * std::clamp(room, 0.0f, 1.0f); }
void Reverb::setDamping(float damping) noexcept { damp_ = 0.4f * std::clamp(damping, 0.0f, 1.0f); }

void Reverb::process(float inLeft, float inRight, float& outLeft, float& outRight) noexcept {
    const float in = (inLeft + inRight) * kInputGain;
    float l = 0.0f, r = 0.0f;
    auto comb = [&](Comb& c) {
        const float y = c.buf[c.pos];
        c.store = y * (1.0f - damp_) + c.store * damp_;
        c.buf[c.pos] = in + c.store * feedback_;
        if (++c.pos == c.buf.size()) c.pos = 0;
        return y;
    };
    for (Comb& c : combL_) l += comb(c);
    for (Comb& c : combR_) r += comb(c);
    auto allpass = [](AllPass& a, float x) {
        const float b = a.buf[a.pos];
        a.buf[a.pos] = x + b * kAllPassFeedback;
        if (++a.pos == a.buf.size()) a.pos = 0;
        return b - x;
    };
    for (AllPass& a : apL_) l = allpass(a, l);
    for (AllPass& a : apR_) r = allpass(a, r);
    // Denormals are flushed by the audio thread; keep the tails finite all the same.
    outLeft = std::isfinite(l) ? l : 0.0f;
    outRight = std::isfinite(r) ? r : 0.0f;
}

} // namespace loopd::dsp
