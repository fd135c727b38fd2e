// Offline renders through the real controller and engine: sample positions, levels, tiling,
// de-clicking, limiter, links, determinism.
#include <gtest/gtest.h>

#include <random>

#include "dsp/Pan.h"
#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

// Loads planar data into buffer `id` through a WAV file and /b_allocRead, as a user would.
void load(OfflineServer& s, TempDir& dir, int id, const std::vector<std::vector<float>>& data, int rate = 48000) {
    const std::string path = dir.file("buf" + std::to_string(id) + ".wav");
    writeWav(path, data, rate);
    s.send("/b_allocRead", id, path.c_str());
    ASSERT_TRUE(s.find("/fail").empty()) << s.find("/fail")[0].str(1);
}

std::vector<float> constant(size_t n, float v) { return std::vector<float>(n, v); }

} // namespace

class StartPosition : public ::testing::TestWithParam<int> {};

TEST_P(StartPosition, BundleStartLandsOnExactSample) {
    for (double t : {0.0123456, 0.25, 1.0 / 3.0, 0.5000104}) {
        OfflineServer s(cfgWithBlock(GetParam()));
        TempDir dir;
        load(s, dir, 1, {constant(4800, 1.0f)});
        s.packet(bundleAt(t, {msg("/s_new", "player", 100, 0, 0, "buf", 1, "loop", 1)}));
        s.renderSeconds(t + 0.1);
        const int64_t expected = std::llround(t * 48000.0);
        EXPECT_EQ(firstNonZero(s.output[0]), expected) << "t=" << t << " block=" << GetParam();
        EXPECT_EQ(firstNonZero(s.output[1]), expected);
    }
}
INSTANTIATE_TEST_SUITE_P(BlockSizes, StartPosition, ::testing::Values(1, 64, 100, 1024));

TEST(Render, NGoReportsTheSampleTime) {
    OfflineServer s;
    TempDir dir;
    load(s, dir, 1, {constant(480, 0.5f)});
    s.send("/notify", 1);
    s.packet(bundleAt(0.01, {msg("/s_new", "player", 7, 0, 0, "buf", 1)}));
    s.renderSeconds(0.1);
    auto go = s.find("/n_go");
    ASSERT_EQ(go.size(), 1u);
    EXPECT_EQ(go[0].i(0), 7);
    EXPECT_EQ(go[0].num(5), 480.0);
    // A one-shot player ends by itself at the end of its buffer: 480 + 480.
    auto end = s.find("/n_end");
    ASSERT_EQ(end.size(), 1u);
    EXPECT_EQ(end[0].num(5), 960.0);
}

TEST(Render, LoopingPlayerTilesTheBufferExactly) {
    OfflineServer s;
    TempDir dir;
    std::mt19937 rng(1234);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    std::vector<float> l(1001), r(1001);
    for (auto& x : l) x = u(rng);
    for (auto& x : r) x = u(rng);
    load(s, dir, 2, {l, r});
    s.send("/s_new", "player", 100, 0, 0, "buf", 2, "loop", 1, "fade", 0.0f);
    s.render(10 * 1001 + 77);
    for (size_t i = 0; i < 10 * 1001 + 77; ++i) {
        ASSERT_EQ(s.output[0][i], l[i % 1001]) << "frame " << i;
        ASSERT_EQ(s.output[1][i], r[i % 1001]) << "frame " << i;
    }
}

TEST(Render, DefaultFadeStillTilesExactlyAfterTheFadeIn) {
    OfflineServer s;
    TempDir dir;
    auto l = sine(441.0, 0.5, 1000, 48000.0);
    load(s, dir, 2, {l, l});
    s.send("/s_new", "player", 100, 0, 0, "buf", 2, "loop", 1);
    s.render(5000);
    for (size_t i = 240; i < 5000; ++i) ASSERT_EQ(s.output[0][i], l[i % 1000]) << i;
    EXPECT_LT(maxStep(s.output[0], 0, 300), 0.05f); // the fade-in made no click
}

TEST(Render, VarispeedChangesPitchByTheRate) {
    OfflineServer s;
    TempDir dir;
    load(s, dir, 1, {sine(1000.0, 0.5, 48000, 48000.0)});
    s.send("/s_new", "player", 100, 0, 0, "buf", 1, "loop", 1, "rate", 1.5f);
    s.render(24000);
    EXPECT_NEAR(zeroCrossingHz(s.output[0], 2000, 24000, 48000.0), 1500.0, 1500.0 * 0.001);
    // Hermite interpolation keeps the level (within 0.1 dB) of a 1.5 kHz tone.
    EXPECT_NEAR(rms(s.output[0], 2000, 24000), 0.5 / std::sqrt(2.0) * std::cos(M_PI / 4), 0.003);
}

TEST(Render, GainPanMuteAndNestedGroupsGiveTheirLevels) {
    OfflineServer s;
    TempDir dir;
    load(s, dir, 1, {constant(48000, 0.5f)});
    s.send("/g_new", 10, 1, 0);       // group 10 at the tail of the root
    s.send("/g_new", 11, 0, 10);      // group 11 inside 10
    s.send("/s_new", "player", 100, 0, 11, "buf", 1, "loop", 1, "gain", 0.8f, "pan", -0.5f);
    s.send("/n_set", 10, "gain", 0.5f);
    s.send("/n_set", 11, "gain", 0.25f, "pan", 0.5f);
    s.render(4800);
    const auto pp = dsp::constantPowerPan(-0.5f);
    const auto gb = dsp::balance(0.5f);
    const double l = 0.5 * 0.8 * pp.left * 0.25 * gb.left * 0.5;
    const double r = 0.5 * 0.8 * pp.right * 0.25 * gb.right * 0.5;
    EXPECT_NEAR(s.output[0][4000], l, 1e-6);
    EXPECT_NEAR(s.output[1][4000], r, 1e-6);

    s.send("/n_set", 11, "mute", 1);
    s.render(4800);
    EXPECT_EQ(s.output[0].back(), 0.0f);
    EXPECT_EQ(s.output[1].back(), 0.0f);
    EXPECT_LT(maxStep(s.output[0], 4800), 0.01f);
    s.send("/n_set", 11, "mute", 0);
    s.render(4800);
    EXPECT_NEAR(s.output[0].back(), l, 1e-6);
}

TEST(Render, SoloWorksLikeAMixingDesk) {
    OfflineServer s;
    TempDir dir;
    load(s, dir, 1, {constant(48000, 0.1f)});
    load(s, dir, 2, {constant(48000, 0.2f)});
    load(s, dir, 3, {constant(48000, 0.4f)});
    // root: [A: [p1], B: [C: [p2]], p3]
    s.send("/g_new", 20, 1, 0, 21, 1, 0, 22, 0, 21);
    s.send("/s_new", "player", 1, 0, 20, "buf", 1, "loop", 1, "pan", -1.0f);
    s.send("/s_new", "player", 2, 0, 22, "buf", 2, "loop", 1, "pan", -1.0f);
    s.send("/s_new", "player", 3, 1, 0, "buf", 3, "loop", 1, "pan", -1.0f);
    s.render(2400);
    EXPECT_NEAR(s.output[0].back(), 0.7f, 1e-5);
    // Solo the nested group C: only p2 plays, its parent B stays open, A and p3 are muted.
    s.send("/n_set", 22, "solo", 1);
    s.render(2400);
    EXPECT_NEAR(s.output[0].back(), 0.2f, 1e-5);
    // Solo A as well: both soloed channels play.
    s.send("/n_set", 20, "solo", 1);
    s.render(2400);
    EXPECT_NEAR(s.output[0].back(), 0.3f, 1e-5);
    // Mute beats solo.
    s.send("/n_set", 20, "mute", 1);
    s.render(2400);
    EXPECT_NEAR(s.output[0].back(), 0.2f, 1e-5);
    s.send("/n_set", 20, "solo", 0, "mute", 0);
    s.send("/n_set", 22, "solo", 0);
    s.render(2400);
    EXPECT_NEAR(s.output[0].back(), 0.7f, 1e-5);
    EXPECT_LT(maxStep(s.output[0], 2400), 0.05f);
}

TEST(Render, LimiterNeverExceedsItsCeilingOnPlus20dB) {
    OfflineServer s;
    TempDir dir;
    std::mt19937 rng(99);
    std::normal_distribution<float> g(0.0f, 3.0f);
    std::vector<float> noise(48000);
    for (auto& x : noise) x = g(rng);
    auto loud = sine(100.0, 10.0, 48000, 48000.0); // +20 dBFS
    load(s, dir, 1, {loud, noise});
    s.send("/s_new", "player", 1, 0, 0, "buf", 1, "loop", 1, "gain", 4.0f);
    s.render(48000);
    const float ceiling = std::pow(10.0f, -0.3f / 20.0f);
    EXPECT_LE(maxAbs(s.output[0]), ceiling);
    EXPECT_LE(maxAbs(s.output[1]), ceiling);
    EXPECT_GT(maxAbs(s.output[0]), ceiling * 0.95f); // it limits, it does not just mute
}

TEST(Render, LimiterIsTransparentWellBelowTheCeiling) {
    OfflineServer s;
    TempDir dir;
    auto x = sine(997.0, 0.5, 9600, 48000.0);
    load(s, dir, 1, {x, x});
    s.send("/s_new", "player", 1, 0, 0, "buf", 1, "fade", 0.0f);
    s.render(9600);
    for (size_t i = 0; i < 9600; ++i) ASSERT_EQ(s.output[0][i], x[i]) << i;
}

TEST(Render, StartsStopsAndParameterStepsMakeNoClick) {
    OfflineServer s;
    TempDir dir;
    // Full-scale DC is the worst case for a hard start or stop.
    load(s, dir, 1, {constant(96000, 0.9f)});
    s.send("/s_new", "player", 1, 0, 0, "buf", 1, "loop", 1);
    s.render(4800);
    s.send("/n_set", 1, "gain", 0.1f);
    s.render(4800);
    s.send("/n_set", 1, "gain", 1.0f, "pan", 1.0f);
    s.render(4800);
    s.send("/n_run", 1, 0);
    s.render(4800);
    s.send("/n_run", 1, 1);
    s.render(4800);
    s.send("/n_free", 1);
    s.render(4800);
    // A 5 ms fade of 0.9 at 48 kHz moves at most 0.9/240 per sample; smoothing 10 ms less.
    EXPECT_LT(maxStep(s.output[0]), 0.9f / 200.0f);
    EXPECT_LT(maxStep(s.output[1]), 0.9f / 200.0f);
    EXPECT_EQ(s.output[0].back(), 0.0f);
}

TEST(Render, AHardStartIsDetectedAsAClick) {
    // Negative control for the click metric above: with fade 0, the same start is a step.
    OfflineServer s;
    TempDir dir;
    load(s, dir, 1, {constant(4800, 0.9f)});
    s.packet(bundleAt(0.01, {msg("/s_new", "player", 1, 0, 0, "buf", 1, "fade", 0.0f, "loop", 1)}));
    s.render(960);
    EXPECT_GT(maxStep(s.output[0]), 0.5f);
}

TEST(Render, NRampIsLinearAndReachesItsTargetOnTime) {
    OfflineServer s;
    TempDir dir;
    load(s, dir, 1, {constant(96000, 0.5f)});
    s.send("/s_new", "player", 1, 0, 0, "buf", 1, "loop", 1, "pan", -1.0f, "fade", 0.0f);
    s.packet(bundleAt(0.1, {msg("/n_ramp", 1, "gain", 0.0f, 1.0f)}));
    s.renderSeconds(1.2);
    // Sample-accurate start at 4800, 48000 samples long.
    EXPECT_NEAR(s.output[0][4800 + 24000], 0.25f, 1e-4);
    EXPECT_NEAR(s.output[0][4800 + 12000], 0.375f, 1e-4);
    EXPECT_EQ(s.output[0][4800 + 48000], 0.0f);
    EXPECT_GT(s.output[0][4800 + 47990], 0.0f);
}

TEST(Render, StartWithAndStopWithFollowAnotherNode) {
    OfflineServer s;
    TempDir dir;
    load(s, dir, 1, {constant(48000 * 4, 0.25f)});
    load(s, dir, 2, {constant(48000 * 4, 0.5f)});
    // Player 2 waits for player 1, starts 0.5 s after it; player 3 stops 0.25 s after 1 ends.
    s.send("/s_new", "player", 2, 1, 0, "buf", 2, "loop", 1, "startWith", 1, "offset", 0.5f, "pan", 1.0f, "fade", 0.0f);
    s.send("/s_new", "player", 3, 1, 0, "buf", 2, "loop", 1, "stopWith", 1, "offset", 0.25f, "pan", -1.0f, "fade", 0.0f);
    s.render(4800);
    EXPECT_EQ(firstNonZero(s.output[1]), -1); // 2 is still waiting
    s.packet(bundleAt(0.2, {msg("/s_new", "player", 1, 1, 0, "buf", 1, "pan", 1.0f, "fade", 0.0f)}));
    s.packet(bundleAt(1.0, {msg("/n_free", 1)}));
    s.renderSeconds(2.0);
    // Right channel: player 1 (0.25) from 0.2 s, player 2 (0.5) joins at 0.7 s.
    EXPECT_EQ(firstNonZero(s.output[1]), 9600);
    EXPECT_NEAR(s.output[1][33600 - 1], 0.25f, 1e-6);
    EXPECT_NEAR(s.output[1][33600], 0.75f, 1e-6);
    // Left: player 3 (fade 0) stops exactly 0.25 s after player 1 was freed (fade 0) at 1.0 s.
    const int64_t lastLeft = [&] { int64_t k = -1; for (size_t i = 0; i < s.output[0].size(); ++i) if (s.output[0][i] != 0.0f) k = static_cast<int64_t>(i); return k; }();
    EXPECT_EQ(lastLeft, 60000 - 1);
}

TEST(Render, NodeOrderCommandsAndQueryTree) {
    OfflineServer s;
    s.send("/g_new", 1, 1, 0, 2, 1, 0, 3, 1, 0);
    s.send("/n_before", 3, 1);
    s.send("/n_after", 1, 2);
    s.send("/g_new", 4, 0, 2);
    s.send("/n_after", 2, 4); // into its own subtree: refused
    s.send("/g_queryTree", 0);
    s.render(64);
    auto tree = s.find("/g_queryTree.reply");
    ASSERT_EQ(tree.size(), 1u);
    // flag, 0 (3 children): 3 (0), 2 (1): 4 (0), 1 (0)
    std::vector<int> ids;
    for (size_t k = 1; k < tree[0].args.size(); k += 2) ids.push_back(tree[0].i(k));
    EXPECT_EQ(ids, (std::vector<int>{0, 3, 2, 4, 1}));
    auto fails = s.find("/fail", "/n_after");
    ASSERT_EQ(fails.size(), 1u);
    EXPECT_NE(fails[0].str(1).find("own subtree"), std::string::npos);
}

TEST(Render, BuffersAreResampledToTheServerRate) {
    OfflineServer s;
    TempDir dir;
    load(s, dir, 1, {sine(441.0, 0.5, 44100, 44100.0)}, 44100);
    s.send("/b_query", 1);
    s.send("/s_new", "player", 1, 0, 0, "buf", 1, "loop", 1);
    s.render(48000);
    auto info = s.find("/b_info");
    ASSERT_EQ(info.size(), 1u);
    EXPECT_NEAR(info[0].i(1), 48000, 2);
    EXPECT_NEAR(zeroCrossingHz(s.output[0], 1000, 40000, 48000.0), 441.0, 0.05);
}

TEST(Render, BufferSwapKeepsPlaying) {
    OfflineServer s;
    TempDir dir;
    load(s, dir, 1, {constant(4800, 0.25f)});
    s.send("/s_new", "player", 1, 0, 0, "buf", 1, "loop", 1, "pan", -1.0f);
    s.render(2400);
    load(s, dir, 1, {constant(2400, 0.5f)}); // replaced while it plays
    s.render(2400);
    EXPECT_NEAR(s.output[0].back(), 0.5f, 1e-6);
    EXPECT_EQ(s.find("/done", "/b_allocRead").size(), 2u);
}

TEST(Render, RecordingCapturesTheMasterAndAGroup) {
    OfflineServer s;
    TempDir dir;
    load(s, dir, 1, {sine(300.0, 0.3, 48000, 48000.0)});
    load(s, dir, 2, {sine(500.0, 0.3, 48000, 48000.0)});
    s.send("/g_new", 5, 1, 0);
    s.send("/s_new", "player", 1, 0, 5, "buf", 1, "loop", 1);
    s.send("/s_new", "player", 2, 1, 0, "buf", 2, "loop", 1);
    const std::string master = dir.file("master.wav"), group = dir.file("group.wav");
    s.packet(bundleAt(0.1, {msg("/rec_start", master.c_str()), msg("/rec_start", group.c_str(), 5)}));
    s.packet(bundleAt(0.6, {msg("/rec_stop")}));
    s.renderSeconds(0.8);
    ASSERT_EQ(s.find("/done", "/rec_stop").size(), 2u);
    auto m = readWav(master);
    auto g = readWav(group);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_NEAR(static_cast<double>(m[0].size()), 24000.0, 80.0);
    // The master file is the output from 0.1 s on, sample for sample.
    for (size_t i = 0; i < 20000; ++i) ASSERT_EQ(m[0][i], s.output[0][4800 + i]) << i;
    // The group file holds only the 300 Hz player.
    EXPECT_NEAR(zeroCrossingHz(g[0], 0, g[0].size(), 48000.0), 300.0, 0.5);
}

TEST(Render, RendersAreDeterministicAndTimeInvariant) {
    auto run = [](double shift) {
        OfflineServer s;
        TempDir dir;
        load(s, dir, 1, {sine(220.0, 0.4, 10000, 48000.0)});
        s.packet(bundleAt(0.01 + shift, {msg("/s_new", "player", 1, 0, 0, "buf", 1, "loop", 1, "rate", 1.01f)}));
        s.packet(bundleAt(0.05 + shift, {msg("/n_ramp", 1, "gain", 0.2f, 0.05f)}));
        s.packet(bundleAt(0.2 + shift, {msg("/n_free", 1)}));
        s.renderSeconds(0.4);
        return s.output[0];
    };
    const auto a = run(0), b = run(0), c = run(100.0 / 48000.0);
    EXPECT_EQ(a, b);
    for (size_t i = 0; i + 100 < a.size(); ++i) ASSERT_EQ(a[i], c[i + 100]) << i;
}

TEST(Render, InputNodeBringsLiveInputIntoAGroup) {
    EngineConfig cfg = OfflineServer::defaultConfig();
    OfflineServer s(cfg);
    s.input = {sine(440.0, 0.5, 9600, 48000.0), std::vector<float>(9600, 0.0f)};
    s.send("/s_new", "input", 1, 0, 0, "in", 0, "chans", 1, "pan", -1.0f, "fade", 0.0f);
    s.render(9600);
    for (size_t i = 10; i < 9000; ++i) ASSERT_NEAR(s.output[0][i], s.input[0][i], 1e-6) << i;
    EXPECT_EQ(maxAbs(s.output[1]), 0.0f);
}

TEST(Render, AudioThreadLogsThroughTheQueue) {
    // A buffer freed under a running player: the player goes silent and the audio thread says so
    // once, through a fixed-size record that the control thread logs; it is counted in /status.
    OfflineServer s;
    TempDir dir;
    load(s, dir, 9, {constant(4800, 0.5f)});
    s.send("/s_new", "player", 1, 0, 0, "buf", 9, "loop", 1);
    s.render(4800);
    EXPECT_GT(maxAbs(s.output[0], 4000), 0.3f);
    s.send("/b_free", 9);
    s.render(48000);
    EXPECT_EQ(maxAbs(s.output[0], 4800 + 128), 0.0f);
    EXPECT_GT(s.engine().stats().missingBufferBlocks, 700u);
}

TEST(Render, APlayerWaitsForItsBufferAndStartsWithItsFirstFrame) {
    OfflineServer s;
    TempDir dir;
    const auto x = sine(441.0, 0.5, 4800, 48000.0, M_PI / 2); // starts at full amplitude
    writeWav(dir.file("late.wav"), {x, x}, 48000);
    s.send("/s_new", "player", 1, 0, 0, "buf", 3, "loop", 1, "fade", 0.0f);
    s.render(4800);
    EXPECT_EQ(maxAbs(s.output[0]), 0.0f);
    const int64_t loadedAt = s.engine().sampleTime(); // the next block boundary
    s.send("/b_allocRead", 3, dir.file("late.wav").c_str());
    s.render(4800);
    // It starts at the first block after the load, from frame 0 of the buffer.
    const int64_t first = firstNonZero(s.output[0]);
    ASSERT_EQ(first, loadedAt);
    for (int k = 0; k < 1000; ++k) ASSERT_EQ(s.output[0][static_cast<size_t>(first + k)], x[static_cast<size_t>(k)]);
}
