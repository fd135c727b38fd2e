// The vectorised varispeed reader (dsp/Varispeed.h): every SIMD kernel the CPU has gives the
// scalar kernel's output, and a player renders the same through any of them, at rates forward,
// backward, slow and fast, across many loop wraps and block sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "dsp/Interpolate.h"
#include "dsp/Varispeed.h"
#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

std::vector<dsp::VarispeedIsa> simdIsas() {
    std::vector<dsp::VarispeedIsa> out;
    const auto saved = dsp::varispeedIsa();
    for (auto isa : {dsp::VarispeedIsa::Sse2, dsp::VarispeedIsa::Avx2})
        if (dsp::setVarispeedIsa(isa)) out.push_back(isa);
    dsp::setVarispeedIsa(saved);
    return out;
}

struct IsaScope {
    explicit IsaScope(dsp::VarispeedIsa isa) : saved(dsp::varispeedIsa()) { ok = dsp::setVarispeedIsa(isa); }
    ~IsaScope() { dsp::setVarispeedIsa(saved); }
    dsp::VarispeedIsa saved;
    bool ok = false;
};

} // namespace

TEST(Varispeed, TheBestKernelIsPickedAndNamed) {
    const auto isas = simdIsas();
    std::printf("varispeed kernel in use: %s; SIMD kernels this CPU runs:", dsp::varispeedIsaName(dsp::varispeedIsa()));
    for (auto isa : isas) std::printf(" %s", dsp::varispeedIsaName(isa));
    std::printf("\n");
#if defined(__x86_64__)
    ASSERT_FALSE(isas.empty()); // SSE2 is every x86-64's
    EXPECT_EQ(dsp::varispeedIsa(), isas.back());
    EXPECT_EQ(dsp::setVarispeedIsa(dsp::VarispeedIsa::Avx2), __builtin_cpu_supports("avx2") != 0);
    dsp::setVarispeedIsa(isas.back());
#endif
    EXPECT_TRUE(dsp::setVarispeedIsa(dsp::VarispeedIsa::Scalar));
    dsp::setVarispeedIsa(simdIsas().empty() ? dsp::VarispeedIsa::Scalar : simdIsas().back());
}

TEST(Varispeed, EveryKernelEqualsTheScalarOneAndTheHermiteFormula) {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> a(20000), b(20000);
    for (auto& x : a) x = u(rng);
    for (auto& x : b) x = u(rng);
    const auto isas = simdIsas();
    int cases = 0;
    for (double rate : {0.5, 0.99, 1.01, 1.5, -1.0, -0.73, 2.37, 1.0, 0.0}) {
        for (int64_t steps : {int64_t{0}, int64_t{12345}, dsp::kVarispeedRebaseSteps - 300}) {
            for (int frames : {1, 3, 7, 8, 63, 64, 65, 200}) {
                for (int sources : {1, 2}) {
                    dsp::VarispeedRun run;
                    run.sources = sources;
                    run.src[0] = a.data();
                    run.src[1] = b.data();
                    run.anchorFrac = 0.37;
                    run.steps = steps;
                    const double whole = std::floor(rate);
                    run.rateWhole = static_cast<int64_t>(whole);
                    run.rateFrac = rate - whole;
                    run.frames = frames;
                    run.index = 10000;
                    run.gain[0] = 0.8f;
                    run.gain[1] = 0.3f;
                    // The reference: each frame's position from the formula, hermite4 on its taps.
                    std::vector<float> wantL(static_cast<size_t>(frames), 0.25f), wantR(static_cast<size_t>(frames), -0.5f);
                    const int64_t w0 = dsp::varispeedWhole(dsp::varispeedT(run.anchorFrac, steps, run.rateFrac));
                    for (int k = 0; k < frames; ++k) {
                        const double t = dsp::varispeedT(run.anchorFrac, steps + k, run.rateFrac);
                        const int64_t w = dsp::varispeedWhole(t);
                        const int64_t i = run.index + k * run.rateWhole + (w - w0);
                        const auto f = static_cast<float>(t - static_cast<double>(w));
                        const float sa = dsp::hermite4(f, a[i - 1], a[i], a[i + 1], a[i + 2]);
                        const float sb = dsp::hermite4(f, b[i - 1], b[i], b[i + 1], b[i + 2]);
                        wantL[k] += 0.8f * sa;
                        wantR[k] += 0.3f * (sources == 1 ? sa : sb);
                    }
                    auto render = [&](dsp::VarispeedIsa isa) {
                        IsaScope scope(isa);
                        EXPECT_TRUE(scope.ok);
                        std::vector<float> L(static_cast<size_t>(frames), 0.25f), R(static_cast<size_t>(frames), -0.5f);
                        dsp::VarispeedRun r = run;
                        r.dst[0] = L.data();
                        r.dst[1] = R.data();
                        dsp::varispeedRun(r);
                        return std::make_pair(L, R);
                    };
                    const auto scalar = render(dsp::VarispeedIsa::Scalar);
                    for (size_t k = 0; k < wantL.size(); ++k) {
                        ASSERT_NEAR(scalar.first[k], wantL[k], 1e-6) << rate << " " << steps << " " << frames << " k=" << k;
                        ASSERT_NEAR(scalar.second[k], wantR[k], 1e-6) << rate << " " << steps << " " << frames << " k=" << k;
                    }
                    for (auto isa : isas) {
                        const auto simd = render(isa);
                        ASSERT_EQ(simd, scalar) << dsp::varispeedIsaName(isa) << " rate " << rate << " steps " << steps << " frames " << frames
                                                << " sources " << sources;
                    }
                    ++cases;
                }
            }
        }
    }
    std::printf("%d runs: every SIMD kernel equal to the scalar one bit for bit\n", cases);
}

namespace {
// A player looping a short buffer (many wraps) at `rate`, rendered with `isa` in blocks of `block`.
std::vector<float> renderPlayer(dsp::VarispeedIsa isa, double rate, int channels, int block, float pan = 0.0f) {
    IsaScope scope(isa);
    EngineConfig cfg = OfflineServer::defaultConfig();
    cfg.blockSize = block;
    OfflineServer s(cfg);
    TempDir dir;
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    std::vector<std::vector<float>> data(static_cast<size_t>(channels), std::vector<float>(997));
    for (auto& ch : data)
        for (auto& x : ch) x = u(rng);
    writeWav(dir.file("b.wav"), data, 48000);
    s.send("/b_allocRead", 1, dir.file("b.wav").c_str());
    s.render(block);
    s.send("/s_new", "player", 10, 0, 0, "buf", 1, "loop", 1, "rate", static_cast<float>(rate), "start", 0.37f, "pan", pan, "gain", 0.9f);
    s.renderSeconds(0.25);
    std::vector<float> out = s.output[0];
    out.insert(out.end(), s.output[1].begin(), s.output[1].end());
    return out;
}
} // namespace

TEST(Varispeed, APlayerRendersTheSameThroughEveryKernelAcrossLoopWraps) {
    const auto isas = simdIsas();
    double worst = 0.0;
    for (double rate : {0.5, 0.99, 1.01, 1.5, -1.0})
        for (int channels : {1, 2})
            for (int block : {64, 100}) {
                const auto scalar = renderPlayer(dsp::VarispeedIsa::Scalar, rate, channels, block, channels == 1 ? 0.3f : -0.2f);
                double level = 0.0;
                for (float x : scalar) level = std::max(level, static_cast<double>(std::fabs(x)));
                ASSERT_GT(level, 0.1) << "silence at rate " << rate; // the player did play
                for (auto isa : isas) {
                    const auto simd = renderPlayer(isa, rate, channels, block, channels == 1 ? 0.3f : -0.2f);
                    ASSERT_EQ(simd.size(), scalar.size());
                    for (size_t i = 0; i < simd.size(); ++i) {
                        worst = std::max(worst, static_cast<double>(std::fabs(simd[i] - scalar[i])));
                        ASSERT_NEAR(simd[i], scalar[i], 1e-6) << dsp::varispeedIsaName(isa) << " rate " << rate << " at " << i;
                    }
                }
            }
    std::printf("player output, SIMD against scalar at rates 0.5 0.99 1.01 1.5 -1 (12000 frames, ~12 wraps): worst difference %.3g\n", worst);
}

TEST(Varispeed, TheOutputDoesNotDependOnTheBlockSize) {
    // The positions come from the anchor, not from a sum carried from block to block.
    for (double rate : {1.01, 0.73, -1.37}) {
        const auto a = renderPlayer(dsp::varispeedIsa(), rate, 2, 64);
        const auto b = renderPlayer(dsp::varispeedIsa(), rate, 2, 100);
        const auto c = renderPlayer(dsp::varispeedIsa(), rate, 2, 1);
        // Renders of different block sizes start the player on different block boundaries:
        // compare from each one's first sound.
        auto first = [](const std::vector<float>& x) {
            size_t i = 0;
            while (i < x.size() / 2 && x[i] == 0.0f) ++i;
            return i;
        };
        const size_t fa = first(a), fb = first(b), fc = first(c);
        for (size_t i = 0; i < 8000; ++i) {
            ASSERT_EQ(a[fa + i], b[fb + i]) << rate << " at " << i;
            ASSERT_EQ(a[fa + i], c[fc + i]) << rate << " at " << i;
        }
    }
}
