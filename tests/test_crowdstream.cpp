// Offline renders: the Crowdstream compatibility addresses, the eq3 isolator, the
// tempo clock and the movement controller, measured on the sound they make.
#include <gtest/gtest.h>

#include <random>

#include "dsp/Eq3Isolator.h"
#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

std::vector<float> constant(size_t n, float v) { return std::vector<float>(n, v); }

double rmsTail(const std::vector<float>& x, size_t n) { return rms(x, x.size() - n, x.size()); }
double db(double ratio) { return 20.0 * std::log10(ratio); }

// Plays a one-second looping sine of `hz` on deck A at volume 1 with the given EQ knobs and
// returns the steady-state RMS of the left output.
double deckRms(double hz, float low, float mid, float high, bool filters = true) {
    EngineConfig cfg = cfgWithBlock(64);
    cfg.enableFilters = filters;
    OfflineServer s(cfg);
    TempDir dir;
    const auto x = sine(hz, 0.5, 48000, 48000.0);
    writeWav(dir.file("s.wav"), {x, x}, 48000);
    s.send("/load_buffer", 100, dir.file("s.wav").c_str(), "sine");
    s.send("/play_stem", 100, 1.0f, 1.0f, 1, 0.0f);
    s.send("/deck_eq_all", "A", low, mid, high);
    s.render(48000 + 24000);
    EXPECT_TRUE(s.find("/fail").empty());
    return rmsTail(s.output[0], 24000);
}

} // namespace

TEST(Crowdstream, StartGroupStartsCuedDecksOnTheSameSample) {
    for (int block : {64, 1024}) {
        OfflineServer s(cfgWithBlock(block));
        TempDir dir;
        std::mt19937 rng(3);
        std::uniform_real_distribution<float> u(0.1f, 0.5f);
        std::vector<float> a(48000), z(48000, 0.0f), b(48000);
        for (auto& v : a) v = u(rng);
        for (auto& v : b) v = u(rng);
        writeWav(dir.file("a.wav"), {a, z}, 48000); // deck A only on the left
        writeWav(dir.file("b.wav"), {z, b}, 44100); // deck B only on the right, another rate
        s.send("/cue", "A", dir.file("a.wav").c_str());
        s.send("/cue", "B", dir.file("b.wav").c_str(), 0.25f);
        s.render(4800);
        EXPECT_EQ(maxAbs(s.output[0]), 0.0f);
        const int64_t now = s.engine().sampleTime();
        s.send("/start_group", 0.1f, "A", "B");
        s.render(9600);
        const int64_t expect = now + 4800;
        EXPECT_EQ(firstNonZero(s.output[0]), expect) << "block " << block;
        EXPECT_EQ(firstNonZero(s.output[1]), expect) << "block " << block;
        EXPECT_EQ(s.find("/done", "/start_group").size(), 1u);
    }
}

TEST(Crowdstream, StartGroupAcceptsDecksFirstAndRefusesUncuedDecks) {
    OfflineServer s;
    TempDir dir;
    writeWav(dir.file("a.wav"), {constant(4800, 0.3f)}, 48000);
    s.send("/cue", "a", dir.file("a.wav").c_str());
    s.send("/start_group", "B", 0.0f);
    auto f = s.find("/fail", "/start_group");
    ASSERT_EQ(f.size(), 1u);
    EXPECT_NE(f[0].str(1).find("deck B is not cued"), std::string::npos);
    s.send("/start_group", "A", 0.0f);
    s.render(960);
    EXPECT_GT(maxAbs(s.output[0]), 0.1f);
}

TEST(Crowdstream, FadeIsLinearAndReachesZeroExactlyAtStartPlusDuration) {
    OfflineServer s;
    TempDir dir;
    writeWav(dir.file("dc.wav"), {constant(48000, 0.5f), constant(48000, 0.5f)}, 48000);
    s.send("/load_buffer", 100, dir.file("dc.wav").c_str());
    s.send("/play_stem", 100, 1.0f, 1.0f, 1, 0.0f);
    s.send("/deck_filter", "A", "low", 1.0f); // EQ flat: DC passes at unity
    s.render(24000);
    const int64_t t0 = s.engine().sampleTime();
    s.send("/fade", "A", 0.5f, 1.0f);
    s.renderSeconds(2.0);
    const double level = s.output[0][static_cast<size_t>(t0 + 24000 - 10)];
    EXPECT_NEAR(level, 0.5 * 0.8, 1e-4); // stem master 0.8
    const size_t end = static_cast<size_t>(t0 + 24000 + 48000);
    EXPECT_NEAR(s.output[0][end - 24000], level * 0.5, 1e-3);
    EXPECT_NEAR(s.output[0][end - 1], level / 48000.0, 1e-6); // one step before the end
    EXPECT_EQ(s.output[0][end], 0.0f);
    EXPECT_EQ(maxAbs(s.output[0], end), 0.0f);
}

TEST(Crowdstream, EqIsFlatKillsEachBandAndTheKnobCutsByTheRule) {
    const double ref1k = deckRms(1000.0, 50, 50, 50);
    EXPECT_NEAR(ref1k, 0.8 * 0.5 / std::sqrt(2.0), 0.002); // flat: the input level
    // Each band killed: a sine in its middle falls by at least 40 dB.
    EXPECT_LT(db(deckRms(70.0, 0, 50, 50) / deckRms(70.0, 50, 50, 50)), -40.0);
    EXPECT_LT(db(deckRms(790.0, 50, 0, 50) / ref1k), -40.0);
    EXPECT_LT(db(deckRms(7000.0, 50, 50, 0) / deckRms(7000.0, 50, 50, 50)), -40.0);
    // Cut-only knob: 25 % is (25/50 - 1) * 24 = -12 dB in the middle of the band; 75 % is flat.
    EXPECT_NEAR(db(deckRms(790.0, 50, 25, 50) / ref1k), -12.0, 0.3);
    EXPECT_NEAR(db(deckRms(790.0, 50, 75, 50) / ref1k), 0.0, 0.05);
    // --disable-filters: a "killed" band passes untouched.
    EXPECT_NEAR(db(deckRms(790.0, 50, 0, 50, false) / ref1k), 0.0, 0.05);
}

TEST(Eq3Isolator, MagnitudeIsFlatAcrossTheBandAtUnityGains) {
    for (double hz : {30.0, 100.0, 250.0, 600.0, 1500.0, 2500.0, 5000.0, 12000.0, 18000.0}) {
        dsp::Eq3Isolator eq;
        eq.prepare(48000.0, 1, {});
        auto x = sine(hz, 0.5, 96000, 48000.0);
        std::vector<float> wet(96000, 1.0f);
        float* ch[1] = {x.data()};
        eq.process(ch, 1, 0, 96000, wet.data());
        const double out = rms(x, 48000, 96000);
        EXPECT_NEAR(db(out / (0.5 / std::sqrt(2.0))), 0.0, 0.05) << hz << " Hz";
    }
}

TEST(Crowdstream, EqGainChangesAreSmoothedPerSample) {
    OfflineServer s;
    TempDir dir;
    const auto x = sine(1000.0, 0.5, 48000, 48000.0);
    writeWav(dir.file("s.wav"), {x, x}, 48000);
    s.send("/load_buffer", 100, dir.file("s.wav").c_str());
    s.send("/play_stem", 100, 1.0f, 1.0f, 1, 0.0f);
    s.render(24000);
    s.send("/deck_eq", "A", "mid", 0.0f); // a kill: over the 20 ms smoothing, not a step
    s.render(9600);
    const size_t t = 24000;
    EXPECT_LT(maxStep(s.output[0], t - 100, t + 2000), 0.09f); // the sine's own step is 0.042
    EXPECT_LT(rms(s.output[0], t + 2400, t + 9600), 0.004);
}

TEST(Crowdstream, MovementStepMovesTheTempoInTheConfiguredRealTime) {
    for (int block : {64, 1024}) {
        OfflineServer s(cfgWithBlock(block));
        s.send("/set_tempo", 105.0f);
        s.render(block);
        s.send("/dance/total_movement", 0.6f);
        const double t99 = 30.0, t63 = t99 / std::log(100.0);
        double at63 = -1, at99 = -1;
        const double start = static_cast<double>(s.engine().sampleTime());
        while (static_cast<double>(s.engine().sampleTime()) - start < 34.0 * 48000) {
            s.render(block);
            const double bpm = s.engine().stats().bpm;
            const double t = (static_cast<double>(s.engine().sampleTime()) - start) / 48000.0;
            if (at63 < 0 && bpm >= 105.0 + 0.632 * 25.0) at63 = t;
            if (at99 < 0 && bpm >= 105.0 + 0.99 * 25.0) at99 = t;
        }
        EXPECT_NEAR(at63, t63, t63 * 0.05) << "block " << block;
        EXPECT_NEAR(at99, t99, t99 * 0.05) << "block " << block;
        EXPECT_NEAR(s.engine().stats().bpm, 130.0, 0.2);
    }
}

TEST(Crowdstream, MovementTableMatchesTheSpecIncludingTheMediumStep) {
    MovementConfig m;
    EXPECT_EQ(m.targetFor(0.0), 105.0);
    EXPECT_EQ(m.targetFor(0.03), 110.0);
    EXPECT_EQ(m.targetFor(0.07), 115.0);
    EXPECT_EQ(m.targetFor(0.12), 118.0); // unreachable in the original
    EXPECT_NEAR(m.targetFor(0.375), 124.0, 1e-9);
    EXPECT_EQ(m.targetFor(0.6), 130.0);
    EXPECT_EQ(m.targetFor(1.0), 130.0);
    EXPECT_NEAR(m.normalise(60.0), 0.6, 1e-12); // values above 1 are on a 0..100 scale
}

TEST(Crowdstream, TempoRampAndBeatsLandOnTheirSamples) {
    OfflineServer s;
    s.send("/notify", 1);
    s.renderSeconds(2.0);
    // 120 BPM: beat k at sample 24000 k, exactly.
    auto beats = s.find("/beat");
    ASSERT_GE(beats.size(), 3u);
    for (size_t k = 0; k < 3; ++k) EXPECT_EQ(beats[k].num(3), 24000.0 * static_cast<double>(k + 1));
    EXPECT_EQ(beats[0].i(0), 1);
    EXPECT_EQ(beats[0].i(1), 2);
    s.send("/set_meter", 3);
    s.send("/tempo", 150.0f, 2.0f);
    s.renderSeconds(2.5);
    EXPECT_NEAR(s.engine().stats().bpm, 150.0, 1e-9);
    // The beats of a linear ramp from 120 to 150 over 2 s: 2 s at 135 on average = 4.5 beats.
    EXPECT_NEAR(s.engine().stats().beats, 4.0 + 4.5 + 0.5 * 2.5, 0.02);
}

TEST(Crowdstream, PlayersFollowTheTempoUnlessTimeStretchIsDisabled) {
    for (bool follow : {true, false}) {
        EngineConfig cfg = cfgWithBlock(64);
        cfg.followTempo = follow;
        OfflineServer s(cfg);
        TempDir dir;
        const auto x = sine(400.0, 0.5, 48000, 48000.0);
        writeWav(dir.file("s.wav"), {x, x}, 48000);
        s.send("/load_buffer", 100, dir.file("s.wav").c_str());
        s.send("/play_stem", 100, 1.0f, 1.0f, 1, 0.0f);
        s.send("/set_tempo", 150.0f); // base 120: rate 1.25 when following
        s.render(48000);
        EXPECT_NEAR(zeroCrossingHz(s.output[0], 4800, 48000, 48000.0), follow ? 500.0 : 400.0, 0.5);
    }
}

TEST(Crowdstream, BadArgumentsFailAndChangeNothing) {
    OfflineServer s;
    TempDir dir;
    writeWav(dir.file("dc.wav"), {constant(48000, 0.5f), constant(48000, 0.5f)}, 48000);
    s.send("/load_buffer", 100, dir.file("dc.wav").c_str());
    s.send("/play_stem", 100, 1.0f, 1.0f, 1, 0.0f);
    s.send("/deck_levels", 0.5f, 1.0f, 1.0f, 1.0f);
    s.render(24000);
    const float before = s.output[0].back();
    const size_t fails = s.find("/fail").size();
    s.send("/deck_eq", "E", "low", 10.0f);
    s.send("/deck_eq", "A", "bass", 10.0f);
    s.send("/deck_eq", "A", 3, 10.0f);
    s.send("/deck_filter", "A", "low", std::nanf(""));
    s.send("/deck_levels", 0.1f, std::nanf(""));
    s.send("/crossfade_levels", 0.1f);
    s.send("/deck_eq_all", "A", 10.0f, 10.0f, 101.0f);
    s.send("/cue", "A", dir.file("missing.wav").c_str());
    s.send("/play", "B", dir.file("missing.wav").c_str(), 0.0f);
    s.send("/load_buffer", 1100, dir.file("missing.wav").c_str());
    s.send("/play_stem", 1100);
    s.send("/play_stem", 50);
    s.send("/stop_stem", 2100);
    s.send("/set_tempo", 0.0f);
    s.send("/dance/total_movement", -1.0f);
    s.send("/set_meter", 0);
    s.send("/fade", "Z", 0.0f);
    s.send("/test_tone", 1e6f);
    s.render(24000);
    EXPECT_EQ(s.find("/fail").size(), fails + 18);
    EXPECT_EQ(s.output[0].back(), before);
    EXPECT_EQ(s.engine().stats().bpm, 120.0);
}

TEST(Crowdstream, TestToneReallyPlaysATone) {
    OfflineServer s;
    s.send("/test_tone", 1000.0f);
    s.render(24000);
    EXPECT_NEAR(zeroCrossingHz(s.output[0], 2400, 24000, 48000.0), 1000.0, 0.5);
    s.renderSeconds(1.5);
    EXPECT_EQ(maxAbs(s.output[0], s.output[0].size() - 4800), 0.0f); // it stops by itself
}
