// stretch/: every engine keeps pitch and level while changing duration by the ratio
// (Rubber Band's TestStretcher measures the same: zero crossings and RMS of a stretched sine).
#include <gtest/gtest.h>

#include "stretch/Stretcher.h"
#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

// Streams `in` through the stretcher the way a player does (feeding what it asks for), drops
// the start delay, and returns everything that came out for the real input.
std::vector<float> runStretch(stretch::Stretcher& s, const std::vector<float>& in, double ratio) {
    std::vector<float> out;
    std::vector<float> feedL(static_cast<size_t>(s.maxFeed())), feedR(feedL.size()), oL(4096), oR(4096);
    const float* fp[2] = {feedL.data(), feedR.data()};
    float* op[2] = {oL.data(), oR.data()};
    size_t pos = 0;
    int drop = s.startDelay();
    const size_t expected = static_cast<size_t>(std::lround(static_cast<double>(in.size()) * ratio));
    int guard = 0;
    while (out.size() < expected && guard++ < 100000) {
        const int avail = s.available();
        if (avail > 0) {
            const int got = s.retrieve(op, std::min(avail, 4096));
            for (int i = 0; i < got; ++i) {
                if (drop > 0) { --drop; continue; }
                out.push_back(oL[static_cast<size_t>(i)]);
            }
            continue;
        }
        const int want = s.inputWanted();
        for (int i = 0; i < want; ++i) {
            const float v = pos < in.size() ? in[pos] : 0.0f;
            feedL[static_cast<size_t>(i)] = feedR[static_cast<size_t>(i)] = v;
            ++pos;
        }
        s.feed(fp, want);
    }
    out.resize(std::min(out.size(), expected));
    return out;
}

} // namespace

class StretchEngines : public ::testing::TestWithParam<stretch::Method> {};

TEST_P(StretchEngines, KeepPitchAndLevelAndScaleDuration) {
    const auto x = sine(440.0, 0.5, 48000 * 3, 48000.0);
    for (double ratio : {0.8, 1.0, 1.25}) {
        auto s = stretch::Stretcher::create(GetParam(), 2, 48000.0, 4096, ratio, 1.0);
        ASSERT_TRUE(s);
        const auto y = runStretch(*s, x, ratio);
        const size_t expected = static_cast<size_t>(std::lround(static_cast<double>(x.size()) * ratio));
        ASSERT_EQ(y.size(), expected) << stretch::methodName(GetParam()) << " " << ratio;
        const size_t a = 9600, b = y.size() - 9600; // after the start, before the end
        EXPECT_NEAR(zeroCrossingHz(y, a, b, 48000.0), 440.0, 440.0 * 0.005) << stretch::methodName(GetParam()) << " " << ratio;
        const double level = 20.0 * std::log10(rms(y, a, b) / (0.5 / std::sqrt(2.0)));
        EXPECT_NEAR(level, 0.0, 1.0) << stretch::methodName(GetParam()) << " " << ratio;
        std::printf("%s ratio %.2f: %.2f Hz, %+.2f dB, start delay %d\n", stretch::methodName(GetParam()), ratio,
                    zeroCrossingHz(y, a, b, 48000.0), level, s->startDelay());
    }
}

TEST_P(StretchEngines, PitchShiftMovesTheFrequency) {
    const auto x = sine(440.0, 0.5, 48000 * 2, 48000.0);
    auto s = stretch::Stretcher::create(GetParam(), 2, 48000.0, 4096, 1.0, std::pow(2.0, 7.0 / 12.0));
    const auto y = runStretch(*s, x, 1.0);
    EXPECT_NEAR(zeroCrossingHz(y, 9600, y.size() - 9600, 48000.0), 440.0 * std::pow(2.0, 7.0 / 12.0), 440.0 * 0.01);
}

INSTANTIATE_TEST_SUITE_P(Engines, StretchEngines,
                         ::testing::Values(stretch::Method::Rb2, stretch::Method::Rb3, stretch::Method::Wsola),
                         [](const ::testing::TestParamInfo<stretch::Method>& p) { return std::string(stretch::methodName(p.param)); });

TEST(StretchNames, AcceptTheOriginalServersNames) {
    EXPECT_EQ(stretch::methodFromName("playback_rate"), stretch::Method::Rate);
    EXPECT_EQ(stretch::methodFromName("pyrubberband"), stretch::Method::Rb2);
    EXPECT_EQ(stretch::methodFromName("audiotsm"), stretch::Method::Wsola);
    EXPECT_EQ(stretch::methodFromName("rb3"), stretch::Method::Rb3);
    EXPECT_FALSE(stretch::methodFromName("paulstretch"));
}
