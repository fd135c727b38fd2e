// Offline renders: every effect measured on the sound it makes, and the routing.
#include <gtest/gtest.h>

#include <random>

#include "dsp/Svf.h"
#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

double db(double r) { return 20.0 * std::log10(r); }

// A server whose live input is `in` (stereo, the same on both channels), fed through group 10 with
// one effect node 20 of `type` and the given creation parameters.
template <typename... P>
OfflineServer& chain(OfflineServer& s, const std::vector<float>& in, const char* type, P... params) {
    s.input = {in, in};
    s.send("/g_new", 10, 1, 0);
    s.send("/s_new", "input", 1, 0, 10, "fade", 0.0f);
    s.send("/s_new", type, 20, 1, 10, params...);
    return s;
}

// Steady-state gain (dB) of a filter setting for a sine of hz.
double filterGainDb(const char* mode, float cutoff, double hz, float q = 0.7071f) {
    OfflineServer s;
    const auto x = sine(hz, 0.25, 72000, 48000.0);
    chain(s, x, "filter", "mode", mode, "cutoffHz", cutoff, "q", q, "fade", 0.0f);
    s.render(72000);
    return db(rms(s.output[0], 24000, 72000) / rms(x, 24000, 72000));
}

} // namespace

TEST(Filter, LowPassHighPassBandPassResponsesAtSeveralCutoffs) {
    for (float fc : {200.0f, 1000.0f, 4000.0f}) {
        EXPECT_NEAR(filterGainDb("lp", fc, fc / 20.0), 0.0, 0.1) << fc;
        EXPECT_NEAR(filterGainDb("lp", fc, fc), -3.01, 0.15) << fc;
        EXPECT_LT(filterGainDb("lp", fc, fc * 4.0), -22.0) << fc;   // 12 dB/octave
        EXPECT_NEAR(filterGainDb("hp", fc, fc), -3.01, 0.15) << fc;
        EXPECT_LT(filterGainDb("hp", fc, fc / 8.0), -34.0) << fc;
        EXPECT_NEAR(filterGainDb("bp", fc, fc, 2.0f), 0.0, 0.1) << fc;
        EXPECT_LT(filterGainDb("bp", fc, fc / 8.0, 2.0f), -20.0) << fc;
    }
    EXPECT_NEAR(filterGainDb("hp", 200.0f, 8000.0), 0.0, 0.1);
}

TEST(Filter, FastSweepAtHighResonanceStaysBoundedUpToNearNyquist) {
    const unsigned seed = std::getenv("LOOPD_SEED") ? static_cast<unsigned>(std::atoi(std::getenv("LOOPD_SEED"))) : 11u;
    std::printf("seed %u (set LOOPD_SEED to reproduce)\n", seed);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    std::vector<float> noise(48000);
    for (auto& v : noise) v = u(rng);
    OfflineServer s;
    chain(s, noise, "filter", "mode", "lp", "cutoffHz", 20.0f, "q", 30.0f, "fade", 0.0f);
    s.render(4800);
    s.send("/n_ramp", 20, "cutoffHz", 20000.0f, 0.1f);     // 20 Hz -> 20 kHz in 100 ms
    s.render(9600);
    s.send("/n_ramp", 20, "cutoffHz", 20.0f, 0.1f);
    s.send("/n_set", 20, "lfoRateHz", 40.0f, "lfoDepthOctaves", 6.0f, "mode", "bp");
    s.render(24000);
    for (float v : s.output[0]) ASSERT_TRUE(std::isfinite(v));
    // Resonance at Q 30 may ring up, but within the resonant gain of the filter (and the limiter).
    EXPECT_LT(maxAbs(s.output[0]), 1.0f);
    EXPECT_GT(maxAbs(s.output[0], 4800), 0.05f);
}

TEST(Filter, ResetGivesIdenticalOutputAndTheTempoLfoFollowsTheBeat) {
    dsp::Svf f;
    f.setCutoff(800.0, 5.0, 48000.0);
    std::vector<double> a, b;
    for (int i = 0; i < 2000; ++i) a.push_back(f.process(std::sin(i * 0.07)).low);
    f.reset();
    for (int i = 0; i < 2000; ++i) b.push_back(f.process(std::sin(i * 0.07)).low);
    EXPECT_EQ(a, b);
    // An LFO of 1 beat at 120 BPM opens the filter twice a second: the loudness of filtered noise
    // peaks once per 24000 samples, on the same phase of every beat.
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    std::vector<float> noise(96000);
    for (auto& v : noise) v = u(rng);
    OfflineServer s;
    chain(s, noise, "filter", "mode", "lp", "cutoffHz", 800.0f, "lfoBeats", 1.0f, "lfoDepthOctaves", 3.0f, "lfoShape", "sine", "fade", 0.0f);
    s.render(96000);
    auto loudest = [&](size_t from) {
        double best = 0; size_t at = 0;
        for (size_t w = from; w < from + 24000; w += 1000) {
            const double r = rms(s.output[0], w, w + 1000);
            if (r > best) { best = r; at = w; }
        }
        return at - from;
    };
    // Sine LFO: widest open a quarter of the way through each beat.
    EXPECT_NEAR(static_cast<double>(loudest(24000)), 6000.0, 2000.0);
    EXPECT_EQ(loudest(24000), loudest(48000));
}

TEST(Delay, AnImpulseReturnsAtExactlyTheSetTimeAndFeedbackDecaysAsSet) {
    std::vector<float> imp(48000, 0.0f);
    imp[4000] = 0.5f; // below the master limiter's ceiling
    OfflineServer s;
    chain(s, imp, "delay", "delaySeconds", 0.01f, "feedback", 0.5f, "mix", 1.0f, "fade", 0.0f);
    s.render(48000);
    EXPECT_EQ(s.output[0][4000], 0.0f);            // dry removed at mix 1
    EXPECT_EQ(s.output[0][4480], 0.5f);
    EXPECT_EQ(s.output[0][4960], 0.25f);
    EXPECT_EQ(s.output[0][5440], 0.125f);
    EXPECT_NEAR(maxAbs(s.output[0], 4481, 4960), 0.0f, 1e-7);
}

TEST(Delay, BeatTimesFollowTheTempo) {
    for (float bpm : {120.0f, 150.0f}) {
        std::vector<float> imp(96000, 0.0f);
        imp[48000] = 0.5f;
        OfflineServer s;
        s.send("/set_tempo", bpm);
        chain(s, imp, "delay", "delayBeats", 0.5f, "feedback", 0.0f, "mix", 1.0f, "fade", 0.0f);
        s.render(96000);
        const size_t expect = 48000 + static_cast<size_t>(std::lround(0.5 * 60.0 / bpm * 48000.0));
        EXPECT_EQ(s.output[0][expect], 0.5f) << bpm;
    }
}

TEST(Delay, PingPongAlternatesSides) {
    std::vector<float> imp(48000, 0.0f), zero(48000, 0.0f);
    imp[4000] = 0.5f;
    OfflineServer s;
    s.input = {imp, zero};
    s.send("/g_new", 10, 1, 0);
    s.send("/s_new", "input", 1, 0, 10, "fade", 0.0f);
    s.send("/s_new", "delay", 20, 1, 10, "delaySeconds", 0.01f, "feedback", 0.5f, "mix", 1.0f, "pingpong", 1, "fade", 0.0f);
    s.render(48000);
    EXPECT_EQ(s.output[0][4480], 0.5f);
    EXPECT_EQ(s.output[1][4960], 0.25f);
    EXPECT_EQ(s.output[0][5440], 0.125f);
    EXPECT_EQ(s.output[1][4480], 0.0f);
}

namespace {
// RT60 from the Schroeder integral of the impulse response (T20, extrapolated).
double rt60(const std::vector<float>& h, size_t from) {
    std::vector<double> e(h.size() - from);
    double acc = 0;
    for (size_t i = h.size(); i-- > from;) { acc += static_cast<double>(h[i]) * h[i]; e[i - from] = acc; }
    const double total = e[0];
    size_t t5 = 0, t25 = 0;
    for (size_t i = 0; i < e.size(); ++i) {
        const double d = 10 * std::log10(e[i] / total);
        if (!t5 && d <= -5) t5 = i;
        if (!t25 && d <= -25) { t25 = i; break; }
    }
    return 3.0 * static_cast<double>(t25 - t5) / 48000.0;
}
} // namespace

TEST(Reverb, DecayTimeGrowsWithRoomSizeWithinTheExpectedRange) {
    double rt[2];
    int k = 0;
    for (float room : {0.3f, 0.9f}) {
        std::vector<float> imp(48000 * 8, 0.0f);
        imp[1000] = 1.0f;
        OfflineServer s;
        chain(s, imp, "reverb", "room", room, "damping", 0.3f, "mix", 1.0f, "fade", 0.0f);
        s.render(48000 * 8);
        rt[k++] = rt60(s.output[0], 1000);
    }
    std::printf("RT60: room 0.3 %.2f s, room 0.9 %.2f s\n", rt[0], rt[1]);
    EXPECT_GT(rt[0], 0.3);
    EXPECT_LT(rt[0], 1.5);
    EXPECT_GT(rt[1], 2.0);
    EXPECT_LT(rt[1], 7.0);
}

TEST(Reverb, AFreedReverbLeavesSilence) {
    std::vector<float> burst(48000 * 2, 0.0f);
    for (int i = 1000; i < 3000; ++i) burst[static_cast<size_t>(i)] = 0.3f * std::sin(static_cast<float>(i) * 0.05f);
    OfflineServer s;
    chain(s, burst, "reverb", "room", 0.9f, "mix", 1.0f); // default 5 ms fade when freed
    s.render(24000);
    EXPECT_GT(maxAbs(s.output[0], 20000, 24000), 0.001f); // the tail rings on
    const auto freedAt = static_cast<size_t>(s.engine().sampleTime()); // the next block boundary
    s.send("/n_free", 20);
    s.render(24000);
    const size_t after = freedAt + 240; // then the 5 ms fade
    EXPECT_GT(maxAbs(s.output[0], freedAt, after), 0.0f);
    EXPECT_EQ(maxAbs(s.output[0], after), 0.0f);
    // The fade-out adds no step beyond the tail's own (a reverb tail is noise-like).
    EXPECT_LE(maxStep(s.output[0], freedAt, after), maxStep(s.output[0], 20000, freedAt));
}

TEST(Stutter, RepeatsTheLastSliceOnTheBeatGridAndReturnsToLive) {
    // A ramp: every sample unique, so the repeated slice is identified exactly.
    std::vector<float> ramp(96000);
    for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<float>(i) / 200000.0f;
    OfflineServer s;
    chain(s, ramp, "stutter", "division", 16, "fade", 0.0f);
    s.render(14400);                     // 0.3 s = beat 0.6 at 120 BPM
    s.send("/n_set", 20, "engage", 1);
    s.render(30000);
    const auto releasedAt = static_cast<size_t>(s.engine().sampleTime());
    s.send("/n_set", 20, "engage", 0);
    s.render(12000);
    const int L = 6000, X = 96, g = 18000; // a sixteenth = 1/4 beat = 6000 samples; grid at beat 0.75
    for (int j = 0; j < g; ++j) ASSERT_EQ(s.output[0][static_cast<size_t>(j)], ramp[static_cast<size_t>(j)]) << j;
    for (int rep = 0; rep < 4; ++rep)
        for (int p = (rep == 0 ? X : 0); p < L - X; ++p)
            ASSERT_EQ(s.output[0][static_cast<size_t>(g + rep * L + p)], ramp[static_cast<size_t>(g - L + p)]) << rep << " " << p;
    // No click at the loop point: the crossfade leads into the slice's first frame.
    EXPECT_LT(maxStep(s.output[0], g, g + 4 * L), 0.002f);
    // Disengaged: live again after the 96-sample crossfade.
    const size_t live = releasedAt + 96;
    for (size_t j = live; j < live + 1000; ++j) ASSERT_EQ(s.output[0][j], ramp[j]) << j;
}

TEST(LimiterAndGain, GroupLimiterHoldsItsCeilingAndGainSetsDecibels) {
    {
        OfflineServer s;
        chain(s, sine(200.0, 4.0, 48000, 48000.0), "limiter", "ceilingDb", -6.0f, "fade", 0.0f);
        s.send("/n_set", 10, "gain", 0.25f); // after the limiter: the master limiter stays out of it
        s.render(48000);
        EXPECT_LE(maxAbs(s.output[0], 2000), 0.25f * std::pow(10.0f, -6.0f / 20.0f) + 1e-6f);
        EXPECT_GT(maxAbs(s.output[0], 2000), 0.25f * 0.45f);
    }
    {
        OfflineServer s;
        const auto x = sine(300.0, 0.5, 24000, 48000.0);
        chain(s, x, "gain", "gainDb", -6.0f, "fade", 0.0f);
        s.render(24000);
        EXPECT_NEAR(rms(s.output[0], 2400, 24000) / rms(x, 2400, 24000), std::pow(10.0, -6.0 / 20.0), 1e-4);
    }
}

TEST(Routing, AMonoPlayerMappedToOutputs1And3AppearsThereAndNowhereElse) {
    EngineConfig cfg = OfflineServer::defaultConfig();
    cfg.numOutputs = 4;
    OfflineServer s(cfg);
    TempDir dir;
    writeWav(dir.file("m.wav"), {sine(500.0, 0.4, 4800, 48000.0)}, 48000);
    s.send("/b_allocRead", 1, dir.file("m.wav").c_str());
    s.send("/s_new", "player", 5, 0, 0, "buf", 1, "loop", 1, "outMask", 10); // bits 1 and 3
    s.render(9600);
    EXPECT_EQ(maxAbs(s.output[0]), 0.0f);
    EXPECT_EQ(maxAbs(s.output[2]), 0.0f);
    EXPECT_NEAR(maxAbs(s.output[1], 4800), 0.4f, 1e-3);
    EXPECT_EQ(s.output[1], s.output[3]);
}

TEST(Routing, AGroupMixesIntoAnyPairAndTheCueBusIsPreFader) {
    EngineConfig cfg = OfflineServer::defaultConfig();
    cfg.numOutputs = 4;
    cfg.cueOutput = 2;
    OfflineServer s(cfg);
    TempDir dir;
    const auto x = sine(500.0, 0.4, 4800, 48000.0);
    writeWav(dir.file("st.wav"), {x, x}, 48000);
    s.send("/b_allocRead", 1, dir.file("st.wav").c_str());
    // Group 10 on outputs 2-3 of its parent at full level; group 11 cued, its fader closed.
    s.send("/g_new", 10, 1, 0, 11, 1, 0);
    s.send("/n_set", 10, "out", 2);
    s.send("/s_new", "player", 5, 0, 10, "buf", 1, "loop", 1);
    s.render(9600);
    EXPECT_EQ(maxAbs(s.output[0]), 0.0f);
    EXPECT_NEAR(maxAbs(s.output[2], 4800), 0.4f, 1e-3);
    s.send("/n_free", 5);
    s.send("/s_new", "player", 6, 0, 11, "buf", 1, "loop", 1);
    s.send("/n_set", 11, "cue", 1, "gain", 0.0f);
    s.render(19200);
    EXPECT_EQ(maxAbs(s.output[0], 14400), 0.0f);             // main: the fader is closed
    EXPECT_NEAR(maxAbs(s.output[2], 14400), 0.4f, 1e-3);       // cue: pre-fader
    EXPECT_NEAR(maxAbs(s.output[3], 14400), 0.4f, 1e-3);
}

TEST(Effects, ParametersFailClearly) {
    OfflineServer s;
    s.send("/s_new", "filter", 20, 0, 0, "room", 0.5f);
    s.send("/s_new", "filter", 21, 0, 0, "cutoffHz", 30000.0f);
    s.send("/s_new", "filter", 22, 0, 0, "mode", "zz");
    s.send("/s_new", "wobbler", 23, 0, 0);
    s.send("/s_new", "delay", 24, 0, 0, "feedback", 1.5f);
    s.send("/s_new", "stutter", 25, 0, 0);
    s.send("/n_set", 25, "division", 0.0f);
    s.send("/n_set", 25, "cutoffHz", 100.0f);
    s.send("/n_ramp", 25, "division", 4.0f, 1.0f);
    s.render(64);
    auto f = s.find("/fail");
    ASSERT_EQ(f.size(), 8u);
    auto said = [&](const std::string& text) {
        for (const auto& m : f) if (m.str(1).find(text) != std::string::npos) return true;
        return false;
    };
    EXPECT_TRUE(said("filter has no parameter 'room'"));
    EXPECT_TRUE(said("out of range for 'cutoffHz'"));
    EXPECT_TRUE(said("'zz' is not a value of 'mode' (lp, hp, bp)"));
    EXPECT_TRUE(said("unknown node type 'wobbler'"));
    EXPECT_TRUE(said("out of range for 'feedback'"));
    EXPECT_TRUE(said("out of range for 'division'"));
    EXPECT_TRUE(said("effect 25 has no parameter 'cutoffHz'"));
    EXPECT_TRUE(said("cannot be ramped"));
}
