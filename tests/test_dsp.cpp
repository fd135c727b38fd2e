// dsp/ units on their own: ramp, interpolation, pan laws, limiter.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include <random>
#include <vector>

#include "dsp/Interpolate.h"
#include "dsp/Limiter.h"
#include "dsp/Pan.h"
#include "dsp/Ramp.h"

using namespace loopd::dsp;

TEST(Ramp, ReachesTheTargetOnTheNthSampleLinearly) {
    LinearRamp r;
    r.reset(0.0f);
    r.setTarget(1.0f, 4);
    EXPECT_FLOAT_EQ(r.next(), 0.25f);
    EXPECT_FLOAT_EQ(r.next(), 0.5f);
    EXPECT_FLOAT_EQ(r.next(), 0.75f);
    EXPECT_EQ(r.next(), 1.0f);
    EXPECT_EQ(r.next(), 1.0f);
    EXPECT_FALSE(r.ramping());
    r.setTarget(0.0f, 10);
    r.skip(7);
    EXPECT_NEAR(r.value(), 0.3f, 1e-6);
    r.skip(100);
    EXPECT_EQ(r.value(), 0.0f);
}

TEST(Interpolate, HermiteIsExactAtIntegerPositionsAndCubicsInBetween) {
    EXPECT_EQ(hermite4(0.0f, 1.0f, 0.123f, -2.0f, 5.0f), 0.123f);
    // Catmull-Rom reproduces a straight line.
    EXPECT_NEAR(hermite4(0.3f, 1.0f, 2.0f, 3.0f, 4.0f), 2.3f, 1e-6);
    // A quadratic, too.
    auto q = [](float x) { return x * x; };
    EXPECT_NEAR(hermite4(0.5f, q(-1), q(0), q(1), q(2)), 0.25f, 1e-6);
}

TEST(Pan, ConstantPowerAndBalanceLaws) {
    const auto c = constantPowerPan(0.0f);
    EXPECT_NEAR(c.left, std::sqrt(0.5f), 1e-6);
    EXPECT_NEAR(c.left * c.left + c.right * c.right, 1.0f, 1e-6);
    EXPECT_NEAR(constantPowerPan(-1.0f).left, 1.0f, 1e-6);
    EXPECT_NEAR(constantPowerPan(-1.0f).right, 0.0f, 1e-6);
    const auto b = balance(0.5f);
    EXPECT_EQ(b.left, 0.5f);
    EXPECT_EQ(b.right, 1.0f);
    EXPECT_EQ(balance(0.0f).left, 1.0f);
}

namespace {
std::vector<std::vector<float>> runLimiter(Limiter& lim, std::vector<std::vector<float>> x, int block) {
    const int n = static_cast<int>(x[0].size());
    for (int off = 0; off < n; off += block) {
        float* ch[2] = {x[0].data(), x[1].data()};
        lim.process(ch, off, std::min(block, n - off));
    }
    return x;
}
} // namespace

TEST(Limiter, HoldsTheCeilingOnRandomBurstsAtEveryBlockSize) {
    const unsigned seed = std::getenv("LOOPD_SEED") ? static_cast<unsigned>(std::atoi(std::getenv("LOOPD_SEED"))) : 20261121u;
    std::printf("seed %u (set LOOPD_SEED to reproduce)\n", seed);
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (int block : {1, 7, 64, 512}) {
        std::vector<std::vector<float>> x(2, std::vector<float>(48000));
        for (size_t i = 0; i < x[0].size(); ++i) {
            const float env = (i / 4000) % 2 ? 12.0f : 0.2f; // +20 dB bursts between quiet parts
            x[0][i] = g(rng) * env;
            x[1][i] = g(rng) * env * 0.5f;
        }
        Limiter lim;
        lim.prepare(48000, 2, {});
        const auto y = runLimiter(lim, x, block);
        const float ceiling = std::pow(10.0f, -0.3f / 20.0f);
        for (int c = 0; c < 2; ++c)
            for (float v : y[static_cast<size_t>(c)]) ASSERT_LE(std::fabs(v), ceiling);
    }
}

TEST(Limiter, IsAPureDelayBelowTheCeilingAndSilencesNaN) {
    Limiter lim;
    lim.prepare(48000, 2, {});
    const int L = lim.latencySamples();
    EXPECT_EQ(L, 71);
    std::vector<std::vector<float>> x(2, std::vector<float>(4800));
    for (size_t i = 0; i < 4800; ++i) x[0][i] = x[1][i] = 0.8f * std::sin(static_cast<float>(i) * 0.05f);
    const auto y = runLimiter(lim, x, 64);
    for (size_t i = static_cast<size_t>(L); i < 4800; ++i) ASSERT_EQ(y[0][i], x[0][i - static_cast<size_t>(L)]);
    std::vector<std::vector<float>> bad(2, std::vector<float>(256, std::nanf("")));
    const auto z = runLimiter(lim, bad, 64);
    for (float v : z[0]) ASSERT_TRUE(std::isfinite(v));
}

TEST(Limiter, TheRestShortcutGivesTheSampleBySampleOutput) {
    // A programme with everything the limiter meets: quiet passages (at rest: the shortcut),
    // +20 dB bursts, a release back to rest, NaN and infinities, silence, a peak exactly at the
    // ceiling. Block by block with the shortcut and sample by sample without it, at every block
    // size: the same output, to within the rounding of the box sum the shortcut re-totals.
    const float ceiling = std::pow(10.0f, -0.3f / 20.0f);
    std::mt19937 rng(11);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<std::vector<float>> x(2, std::vector<float>(96000));
    for (size_t i = 0; i < x[0].size(); ++i) {
        const size_t part = i / 6000;
        const float env = part % 4 == 1 ? 12.0f : part % 4 == 3 ? 0.0f : 0.15f;
        x[0][i] = g(rng) * env;
        x[1][i] = g(rng) * env * 0.7f;
    }
    x[0][30000] = std::nanf("");
    x[1][30001] = std::numeric_limits<float>::infinity();
    x[0][42000] = ceiling;
    x[1][42001] = -ceiling;
    Limiter ref;
    ref.prepare(48000, 2, {});
    ref.setRestShortcut(false);
    const auto want = runLimiter(ref, x, 64);
    for (int block : {1, 13, 64, 256}) {
        Limiter lim;
        lim.prepare(48000, 2, {});
        const auto got = runLimiter(lim, x, block);
        float worst = 0.0f;
        for (int c = 0; c < 2; ++c)
            for (size_t i = 0; i < want[0].size(); ++i) {
                ASSERT_TRUE(std::isfinite(got[static_cast<size_t>(c)][i]));
                worst = std::max(worst, std::fabs(got[static_cast<size_t>(c)][i] - want[static_cast<size_t>(c)][i]));
            }
        EXPECT_LE(worst, 1e-6f) << "block " << block;
    }
}

namespace {
// The limiter's documented method, computed the slow and obvious way: the need of each input
// sample, its minimum over the last w samples (brute force), the release, the mean over the
// last w released values (summed afresh), applied to the input w-1 samples ago.
std::vector<std::vector<float>> referenceLimiter(const std::vector<std::vector<float>>& x, int w, float ceiling, float releaseCoef) {
    const size_t n = x[0].size();
    std::vector<float> need(n), released(n);
    std::vector<std::vector<float>> y(2, std::vector<float>(n));
    float r = 1.0f;
    for (size_t i = 0; i < n; ++i) {
        const float peak = std::max(std::fabs(x[0][i]), std::fabs(x[1][i]));
        need[i] = peak > ceiling ? ceiling / peak : 1.0f;
        float held = 1.0f;
        for (size_t k = i + 1 > static_cast<size_t>(w) ? i + 1 - static_cast<size_t>(w) : 0; k <= i; ++k) held = std::min(held, need[k]);
        r = std::min(held, r + (1.0f - r) * releaseCoef);
        released[i] = r;
        double sum = 0.0;
        for (int k = 0; k < w; ++k) sum += i >= static_cast<size_t>(k) ? released[i - static_cast<size_t>(k)] : 1.0f;
        const float gain = std::min(1.0f, static_cast<float>(sum / w));
        for (int c = 0; c < 2; ++c) {
            const float in = i + 1 >= static_cast<size_t>(w) ? x[static_cast<size_t>(c)][i + 1 - static_cast<size_t>(w)] : 0.0f;
            y[static_cast<size_t>(c)][i] = std::clamp(in * gain, -ceiling, ceiling);
        }
    }
    return y;
}
} // namespace

TEST(Limiter, FollowsItsMethodThroughLongMonotonicOvers) {
    // A loud bass note (20 Hz at +12 dB): its peak falls steadily for hundreds of samples, so the
    // need of each sample is larger than the last for far longer than the look-ahead window; the
    // sliding minimum must still hold the smallest need of the window, not the newest. Then noise
    // bursts. Against the method computed the slow way, at several block sizes.
    const float ceiling = std::pow(10.0f, -0.3f / 20.0f);
    std::mt19937 rng(3);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<std::vector<float>> x(2, std::vector<float>(48000));
    for (size_t i = 0; i < x[0].size(); ++i) {
        const float bass = 4.0f * std::sin(2.0f * 3.14159265f * 20.0f * static_cast<float>(i) / 48000.0f);
        const float noise = i >= 24000 && (i / 3000) % 2 ? g(rng) * 6.0f : 0.0f;
        x[0][i] = bass + noise;
        x[1][i] = 0.5f * bass - noise;
    }
    Limiter::Settings s;
    const int w = static_cast<int>(std::lround(s.lookaheadSeconds * 48000.0));
    const float coef = static_cast<float>(1.0 - std::exp(-1.0 / (s.releaseSeconds * 48000.0)));
    const auto want = referenceLimiter(x, w, ceiling, coef);
    for (int block : {1, 64, 256}) {
        Limiter lim;
        lim.prepare(48000, 2, s);
        const auto got = runLimiter(lim, x, block);
        float worst = 0.0f;
        size_t at = 0;
        for (int c = 0; c < 2; ++c)
            for (size_t i = 0; i < want[0].size(); ++i) {
                const float d = std::fabs(got[static_cast<size_t>(c)][i] - want[static_cast<size_t>(c)][i]);
                if (d > worst) { worst = d; at = i; }
            }
        EXPECT_LE(worst, 1e-5f) << "block " << block << " at sample " << at;
    }
}

TEST(Limiter, ResetGivesIdenticalOutput) {
    Limiter lim;
    lim.prepare(48000, 2, {});
    std::vector<std::vector<float>> x(2, std::vector<float>(9600));
    for (size_t i = 0; i < 9600; ++i) x[0][i] = x[1][i] = 4.0f * std::sin(static_cast<float>(i) * 0.01f);
    const auto a = runLimiter(lim, x, 64);
    lim.reset();
    const auto b = runLimiter(lim, x, 64);
    EXPECT_EQ(a, b);
}

TEST(Limiter, ReleasesAllTheWayBackToAPureDelay) {
    // A +12 dB burst, then a quiet sine for three seconds. Two seconds after the burst the release
    // (80 ms: 25 time constants) has brought the gain back to exactly 1: the output is the input, delayed, to the
    // bit. (A release computed as r + (1 - r) * c in float stalls about 1e-4 under 1, where the
    // step is less than half a float step: a limiter that touched one over once then stayed
    // 0.001 dB down for the rest of the night.)
    Limiter lim;
    lim.prepare(48000, 2, {});
    const int L = lim.latencySamples();
    const size_t n = 48000 * 3 + 4800;
    std::vector<std::vector<float>> x(2, std::vector<float>(n));
    for (size_t i = 0; i < n; ++i) {
        const float s = std::sin(static_cast<float>(i) * 0.031f);
        x[0][i] = i < 4800 ? 4.0f * s : 0.5f * s;
        x[1][i] = -x[0][i];
    }
    for (int block : {64, 1}) {
        lim.reset();
        const auto y = runLimiter(lim, x, block);
        EXPECT_LT(lim.takeMinGain(), 0.3f) << "the burst is limited";
        size_t firstWrong = n;
        for (size_t i = 4800 + 2 * 48000; i < n; ++i)
            if (y[0][i] != x[0][i - static_cast<size_t>(L)] || y[1][i] != x[1][i - static_cast<size_t>(L)]) { firstWrong = i; break; }
        EXPECT_EQ(firstWrong, n) << "block " << block << ": output " << y[0][firstWrong] << ", input " << x[0][firstWrong - static_cast<size_t>(L)];
    }
}

TEST(Limiter, ACeilingLoweredAtRestHoldsFromTheNextSample) {
    // At rest (0.8 peaks under the -0.3 dB ceiling), then the ceiling drops to -6 dB: the samples
    // already in the look-ahead line were judged by the old ceiling, and must still leave under
    // the new one.
    Limiter lim;
    lim.prepare(48000, 2, {});
    std::vector<std::vector<float>> x(2, std::vector<float>(9600));
    for (size_t i = 0; i < 9600; ++i) x[0][i] = x[1][i] = 0.8f * std::sin(static_cast<float>(i) * 0.05f);
    std::vector<std::vector<float>> first(2, std::vector<float>(x[0].begin(), x[0].begin() + 4800));
    runLimiter(lim, first, 64);
    lim.setCeilingDb(-6.0f);
    std::vector<std::vector<float>> rest(2, std::vector<float>(x[0].begin() + 4800, x[0].end()));
    const auto y = runLimiter(lim, rest, 64);
    for (int c = 0; c < 2; ++c)
        for (float v : y[static_cast<size_t>(c)]) ASSERT_LE(std::fabs(v), lim.ceiling());
}
