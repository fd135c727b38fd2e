// Tempo and beats of audio (server/analysis/TempoTracker): synthetic drum loops made here
// (kick, snare, hats) at 90, 123, 140 and 174 BPM, and a click track for the beat times.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <deque>
#include <random>
#include <vector>

#include "server/analysis/LiveAnalysis.h"
#include "server/analysis/MaterialAnalysis.h"
#include "server/analysis/TempoTracker.h"
#include "server/engine/TempoClock.h"
#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {
constexpr double kRate = 48000.0;

// A bar of sixteenths: kick on 1, 3 and the "and" of 3; snare on 2 and 4; hats on eighths.
std::vector<float> drumLoop(double bpm, double seconds, unsigned seed) {
    std::vector<float> x(static_cast<size_t>(seconds * kRate), 0.0f);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> noise(-1.0f, 1.0f);
    const double sixteenth = 60.0 / bpm * kRate / 4.0;
    for (int s = 0; s * sixteenth < static_cast<double>(x.size()); ++s) {
        const auto at = static_cast<size_t>(std::llround(s * sixteenth));
        const int step = s % 16;
        auto add = [&](double length, auto f) {
            for (size_t i = 0; i < static_cast<size_t>(length * kRate) && at + i < x.size(); ++i) x[at + i] += f(static_cast<double>(i) / kRate);
        };
        if (step == 0 || step == 8 || step == 10)
            add(0.25, [&](double t) { return static_cast<float>(0.8 * std::sin(2 * M_PI * (50 + 100 * std::exp(-t * 30)) * t) * std::exp(-t * 12)); });
        if (step == 4 || step == 12)
            add(0.2, [&](double t) { return static_cast<float>((0.5 * noise(rng) + 0.3 * std::sin(2 * M_PI * 190 * t)) * std::exp(-t * 20)); });
        if (step % 2 == 0) add(0.05, [&](double t) { return static_cast<float>(0.2 * noise(rng) * std::exp(-t * 80)); });
    }
    return x;
}
} // namespace

TEST(TempoTracker, EightSecondsOfADrumLoopGiveItsTempoWithinAHalfBpmNeverHalfOrDouble) {
    for (double truth : {90.0, 123.0, 140.0, 174.0}) {
        const auto x = drumLoop(truth, 8.0, 7);
        TempoTracker t(kRate);
        for (size_t i = 0; i < x.size(); i += 256) t.push(x.data() + i, static_cast<int>(std::min<size_t>(256, x.size() - i)));
        const auto e = t.estimate(8.0);
        std::printf("%5.1f BPM loop, 8 s: %.2f BPM, confidence %.2f, %zu beats\n", truth, e.bpm, e.confidence, e.beats.size());
        EXPECT_NEAR(e.bpm, truth, 0.5);
        EXPECT_GT(e.confidence, 0.8);
    }
}

TEST(TempoTracker, ASlidingWindowFollowsATempoChange) {
    // 12 s at 100 BPM, then 12 s at 128: the last 8 s tell the new tempo.
    auto x = drumLoop(100.0, 12.0, 1);
    const auto y = drumLoop(128.0, 12.0, 2);
    x.insert(x.end(), y.begin(), y.end());
    TempoTracker t(kRate);
    t.push(x.data(), static_cast<int>(12.0 * kRate));
    EXPECT_NEAR(t.estimate(8.0).bpm, 100.0, 0.5);
    t.push(x.data() + static_cast<size_t>(12.0 * kRate), static_cast<int>(12.0 * kRate));
    EXPECT_NEAR(t.estimate(8.0).bpm, 128.0, 0.5);
}

TEST(TempoTracker, BeatsOfAClickTrackSitOnItsClicks) {
    const double bpm = 120.0, beat = 60.0 / bpm * kRate;
    std::vector<float> x(static_cast<size_t>(10.0 * kRate), 0.0f);
    for (int k = 0; k * beat < static_cast<double>(x.size()); ++k)
        for (int i = 0; i < 480; ++i) x[static_cast<size_t>(k * beat) + static_cast<size_t>(i)] += static_cast<float>(0.8 * std::sin(2 * M_PI * 1000.0 * i / kRate) * std::exp(-i / 100.0));
    TempoTracker t(kRate);
    t.push(x.data(), static_cast<int>(x.size()));
    const auto e = t.estimate(10.0);
    ASSERT_GE(e.beats.size(), 10u);
    double worst = 0.0, mean = 0.0;
    for (int64_t b : e.beats) {
        const double off = static_cast<double>(b) - std::round(static_cast<double>(b) / beat) * beat;
        worst = std::max(worst, std::fabs(off));
        mean += off;
    }
    mean /= static_cast<double>(e.beats.size());
    std::printf("click track: %zu beats, mean offset %.1f ms, worst %.1f ms (a step is %.1f ms)\n", e.beats.size(), mean / 48.0, worst / 48.0,
                TempoTracker::kStep / 48.0);
    EXPECT_NEAR(e.bpm, 120.0, 0.5);
    EXPECT_LT(std::fabs(mean) / 48.0, 2.0);
    EXPECT_LT(worst / 48.0, 6.0); // within half a detection-function step
    // The fitted line's last beat: on a click, finer than a step (the phase pull aims at it).
    const double phaseOff = e.phaseSample - std::round(e.phaseSample / beat) * beat;
    std::printf("fitted last beat %.1f ms off its click\n", phaseOff / 48.0);
    EXPECT_GT(e.phaseSample, static_cast<double>(x.size()) - 2.5 * beat); // the last inner beat
    EXPECT_LT(std::fabs(phaseOff) / 48.0, 2.0);
}

TEST(TempoTracker, TheFittedBeatOfADrumLoopIsWithinAStepAndOnItsOnsetsOnceSnapped) {
    // The tracker alone puts a drum loop's beats 7-9 ms after its kicks (a low kick's detection
    // function peaks late); snapped to the onsets of the hits (here: their true samples, as a
    // perfect onset detector would report them) the phase is on the quarter notes.
    for (double bpm : {90.0, 120.0, 140.0, 174.0}) {
        const double beat = 60.0 / bpm * kRate;
        const auto x = drumLoop(bpm, 10.0, 4);
        std::deque<int64_t> hits;
        for (int k = 0; k * beat / 2 < static_cast<double>(x.size()); ++k) hits.push_back(std::llround(k * beat / 2)); // the eighths
        TempoTracker t(kRate);
        t.push(x.data(), static_cast<int>(x.size()));
        const auto e = t.estimate(8.0);
        const double off = e.phaseSample - std::round(e.phaseSample / beat) * beat;
        const double snapped = TempoTracker::snapToOnsets(e.phaseSample, e.beatPeriod, hits, kRate);
        const double snappedOff = snapped - std::round(snapped / beat) * beat;
        std::printf("%5.1f BPM loop: fitted last beat %.2f ms off a quarter note, %.2f ms once snapped to the hits\n", bpm, off / 48.0, snappedOff / 48.0);
        EXPECT_LT(std::fabs(off) / 48.0, 10.7);
        EXPECT_LT(std::fabs(snappedOff) / 48.0, 2.0);
    }
    // No onsets near the grid (or too few): the phase stands.
    EXPECT_DOUBLE_EQ(TempoTracker::snapToOnsets(1000.0, 24000.0, std::deque<int64_t>{}, kRate), 1000.0);
    EXPECT_DOUBLE_EQ(TempoTracker::snapToOnsets(48000.0, 24000.0, std::deque<int64_t>{100, 24100, 12000}, kRate), 48000.0);
}

TEST(TempoTracker, SilenceAndTooLittleInputGiveNoTempo) {
    TempoTracker t(kRate);
    std::vector<float> silence(static_cast<size_t>(10.0 * kRate), 0.0f);
    t.push(silence.data(), static_cast<int>(silence.size()));
    EXPECT_EQ(t.estimate(8.0).bpm, 0.0);
    EXPECT_EQ(t.estimate(8.0).confidence, 0.0);
    TempoTracker shortInput(kRate);
    const auto x = drumLoop(120.0, 2.0, 3);
    shortInput.push(x.data(), static_cast<int>(x.size()));
    EXPECT_EQ(shortInput.estimate(8.0).bpm, 0.0);
}

TEST(TempoTracker, FoldingKeepsTheTempoInsideTheRange) {
    EXPECT_DOUBLE_EQ(TempoTracker::fold(87.0, 90.0, 180.0), 174.0);
    EXPECT_DOUBLE_EQ(TempoTracker::fold(348.0, 70.0, 180.0), 174.0);
    EXPECT_DOUBLE_EQ(TempoTracker::fold(123.0, 70.0, 180.0), 123.0);
    EXPECT_DOUBLE_EQ(TempoTracker::fold(0.0, 70.0, 180.0), 0.0);
}


TEST(LiveAnalysis, TheInputsTempoIsEstimatedAfterEightSecondsAndStaysRight) {
    // Drum loops on the input of an offline render: the first /tempo_estimate comes with 8 s of
    // input, and every estimate after it (sent when it changes, every half second at most) is
    // within half a BPM — never half or double.
    for (double truth : {90.0, 123.0, 140.0, 174.0}) {
        OfflineServer s;
        const auto x = drumLoop(truth, 16.0, 5);
        s.input = {x, x};
        s.send("/notify", 1);
        s.render(static_cast<int64_t>(16.0 * kRate));
        const auto est = s.find("/tempo_estimate");
        ASSERT_FALSE(est.empty()) << truth;
        EXPECT_GE(est.front().num(2), 8.0 * kRate) << "the first estimate needs 8 s of input";
        double worst = 0.0;
        for (const auto& e : est) worst = std::max(worst, std::fabs(e.num(0) - truth));
        std::printf("%5.1f BPM on the input: %zu estimates from %.1f s, worst %.2f BPM off, last confidence %.2f\n", truth, est.size(),
                    est.front().num(2) / kRate, worst, est.back().num(1));
        EXPECT_LT(worst, 0.5) << truth;
        EXPECT_GT(est.back().num(1), 0.8) << truth;
    }
}

TEST(LiveAnalysis, DrumHitsOnTheInputAreReportedAsOnsetsOnTheirSample) {
    // Kicks, snares and noise bursts a quarter of a second apart at known samples (each off the
    // detector's hop grid by a different amount): every hit is one /onset within 5 ms of it.
    OfflineServer s;
    std::vector<float> x(static_cast<size_t>(8.0 * kRate), 0.0f);
    std::mt19937 rng(4);
    std::uniform_real_distribution<float> noise(-1.0f, 1.0f);
    std::vector<double> hits;
    for (int k = 0; k < 28; ++k) {
        const size_t at = static_cast<size_t>((0.4 + 0.25 * k) * kRate) + static_cast<size_t>(k * 37);
        hits.push_back(static_cast<double>(at));
        for (size_t i = 0; i < 7200 && at + i < x.size(); ++i) {
            const double t = static_cast<double>(i) / kRate;
            x[at + i] += k % 3 == 0 ? static_cast<float>(0.8 * std::sin(2 * M_PI * (50 + 100 * std::exp(-t * 30)) * t) * std::exp(-t * 12))
                         : k % 3 == 1 ? static_cast<float>((0.5 * noise(rng) + 0.3 * std::sin(2 * M_PI * 190 * t)) * std::exp(-t * 20))
                                      : static_cast<float>(0.8 * noise(rng) * std::exp(-t * 100));
        }
    }
    s.input = {x, std::vector<float>(x.size(), 0.0f)};
    s.send("/notify", 1);
    s.render(static_cast<int64_t>(x.size()));
    const auto onsets = s.find("/onset");
    double worst = 0.0, mean = 0.0;
    for (const auto& o : onsets) {
        double best = 1e9;
        for (double h : hits)
            if (std::fabs(o.num(0) - h) < std::fabs(best)) best = o.num(0) - h;
        worst = std::max(worst, std::fabs(best));
        mean += best;
        EXPECT_GT(o.num(1), 0.0) << "strength";
    }
    mean /= static_cast<double>(std::max<size_t>(1, onsets.size()));
    std::printf("%zu onsets for %zu hits: mean %.2f ms, worst %.2f ms off\n", onsets.size(), hits.size(), mean / 48.0, worst / 48.0);
    EXPECT_EQ(onsets.size(), hits.size());
    EXPECT_LT(worst / 48.0, 5.0);
}

TEST(LiveAnalysis, TheChosenInputIsTheOneHeard) {
    // A drum loop on input 1 only: with /analysis_input 0 no tempo is heard, with 1 it is.
    OfflineServer s;
    const auto x = drumLoop(123.0, 20.0, 9);
    s.input = {std::vector<float>(x.size(), 0.0f), x};
    s.send("/notify", 1);
    s.send("/analysis_input", 0);
    s.render(static_cast<int64_t>(10.0 * kRate));
    for (const auto& e : s.find("/tempo_estimate")) EXPECT_EQ(e.num(0), 0.0) << "silence has no tempo";
    EXPECT_TRUE(s.find("/onset").empty()) << "silence has no onsets";
    s.send("/analysis_input", 1);
    s.render(static_cast<int64_t>(10.0 * kRate));
    const auto est = s.find("/tempo_estimate");
    ASSERT_FALSE(est.empty());
    EXPECT_NEAR(est.back().num(0), 123.0, 0.5);
    s.send("/analysis_input", 7);
    s.render(64);
    ASSERT_EQ(s.find("/fail", "/analysis_input").size(), 1u);
    EXPECT_NE(s.find("/fail", "/analysis_input")[0].str(1).find("out of range"), std::string::npos);
}

namespace {
double clockBpm(OfflineServer& s) { return s.engine().stats().bpm; }
// How far (in beats, -0.5..0.5) the clock's beat grid stands ahead of a grid with beats at
// `firstBeat` + k x `period` samples, at the end of what was rendered.
double phaseOff(OfflineServer& s, double firstBeat, double period) {
    const EngineStats st = s.engine().stats();
    const double heard = (static_cast<double>(st.sampleTime) - firstBeat) / period;
    const double d = st.beats - heard;
    return d - std::round(d);
}
} // namespace

TEST(TempoSource, AnalysisGlidesTheClockToTheEstimateInTheConfiguredTime) {
    // A 123 BPM loop on the input, the clock at 120: nothing moves before the first estimate (8 s
    // of input); then the clock follows with the movement law, 99 % of the way in 8 s (the
    // default `analysis.up_seconds`): 90 % after 4 s, within 0.1 BPM of the loop after 8.
    OfflineServer s;
    const auto x = drumLoop(123.0, 24.0, 5);
    s.input = {x, x};
    s.send("/tempo_source", "analysis");
    ASSERT_EQ(s.find("/done", "/tempo_source").size(), 1u);
    s.render(static_cast<int64_t>(7.9 * kRate));
    EXPECT_DOUBLE_EQ(clockBpm(s), 120.0) << "no estimate yet: the tempo stays";
    s.render(static_cast<int64_t>(4.1 * kRate)); // 12 s: 4 s after the first estimate
    const double at12 = clockBpm(s);
    s.render(static_cast<int64_t>(4.5 * kRate)); // 16.5 s
    const double at16 = clockBpm(s);
    std::printf("clock: 120 at 7.9 s, %.2f at 12 s, %.2f at 16.5 s (loop 123)\n", at12, at16);
    EXPECT_NEAR(at12, 120.0 + 0.9 * 3.0, 0.2);
    EXPECT_NEAR(at16, 123.0, 0.1);
    s.send("/tempo_source");
    ASSERT_EQ(s.find("/tempo_source.reply").size(), 1u);
    EXPECT_EQ(s.find("/tempo_source.reply")[0].str(0), "analysis");
    EXPECT_EQ(s.find("/tempo_source.reply")[0].i(1), 0);
}

TEST(TempoSource, PhasePullSlidesTheClocksBeatsOntoTheBeatsHeard) {
    // The loop at the clock's tempo but 0.3 beats late: without the pull the clock stays 0.3 off;
    // with `/tempo_source analysis 1` its beats come onto the loop's.
    const double period = 60.0 / 120.0 * kRate, late = 0.3 * period;
    auto x = drumLoop(120.0, 30.0, 9);
    x.insert(x.begin(), static_cast<size_t>(late), 0.0f);
    double off[2];
    for (int pull = 0; pull < 2; ++pull) {
        OfflineServer s;
        s.input = {x, x};
        s.send("/tempo_source", "analysis", pull);
        s.render(static_cast<int64_t>(29.0 * kRate));
        off[pull] = phaseOff(s, late, period);
        EXPECT_NEAR(clockBpm(s), 120.0, 0.1);
    }
    std::printf("clock beats vs the loop's after 29 s: %+.3f beats without the pull, %+.4f beats (%.2f ms) with it\n", off[0], off[1],
                off[1] * period / 48.0);
    EXPECT_NEAR(off[0], 0.3, 0.01);
    EXPECT_LT(std::fabs(off[1]) * period / 48.0, 5.0) << "within 5 ms of the loop's beats";
}

TEST(TempoSource, OtherSourcesAreRefusedWhileOneLeadsAndSilenceKeepsTheTempo) {
    OfflineServer s;
    s.send("/tempo_source", "analysis");
    s.send("/tempo", 100.0f);
    s.send("/dance/total_movement", 0.3f);
    s.send("/tempo_source", "link"); // Link is off (and an offline render never uses it)
    s.send("/link", 1);
    s.send("/tempo_source", "sideways");
    s.send("/tempo_source", "movement", 1);
    s.render(static_cast<int64_t>(12.0 * kRate)); // silence on the input: no estimate
    EXPECT_DOUBLE_EQ(clockBpm(s), 120.0);
    ASSERT_EQ(s.find("/fail", "/tempo").size(), 1u);
    EXPECT_NE(s.find("/fail", "/tempo")[0].str(1).find("tempo source is analysis"), std::string::npos);
    EXPECT_EQ(s.find("/fail", "/dance/total_movement").size(), 1u);
    ASSERT_EQ(s.find("/fail", "/tempo_source").size(), 3u);
    ASSERT_EQ(s.find("/fail", "/link").size(), 1u);
    EXPECT_NE(s.find("/fail", "/link")[0].str(1).find("offline render never uses Link"), std::string::npos);
    EXPECT_NE(s.find("/fail", "/tempo_source")[0].str(1).find("needs Link on"), std::string::npos);
    EXPECT_NE(s.find("/fail", "/tempo_source")[1].str(1).find("unknown tempo source"), std::string::npos);
    EXPECT_NE(s.find("/fail", "/tempo_source")[2].str(1).find("phase pull needs"), std::string::npos);
    // An outside analyser: folded into the range (250 → 125), followed when confident enough.
    s.send("/analysis/bpm", 250.0f, 0.2f);
    s.render(static_cast<int64_t>(1.0 * kRate));
    EXPECT_DOUBLE_EQ(clockBpm(s), 120.0) << "confidence 0.2 is under the 0.5 needed";
    s.send("/analysis/bpm", 250.0f, 0.9f);
    s.render(static_cast<int64_t>(8.0 * kRate));
    EXPECT_NEAR(clockBpm(s), 125.0, 0.06);
    s.send("/analysis/bpm", 500.0f);
    EXPECT_EQ(s.find("/fail", "/analysis/bpm").size(), 1u);
    // Movement leads: /tempo refused, movement followed; manual again: /tempo works.
    s.send("/tempo_source", "movement");
    s.send("/tempo", 100.0f);
    EXPECT_EQ(s.find("/fail", "/tempo").size(), 2u);
    s.send("/tempo_source", "manual");
    s.send("/tempo", 100.0f);
    s.render(256);
    EXPECT_DOUBLE_EQ(clockBpm(s), 100.0);
}

TEST(TempoClockNudge, ASlideMovesTheBeatsNotTheTempoAndNeverFasterThanTwoPercent) {
    // +0.1 beat asked in 1 s at 120 BPM: the pace change is capped at 2 % (0.04 beat/s), so it
    // takes 2.5 s; beats stay whole and in order; the tempo reads 120 throughout.
    TempoClock c;
    c.prepare(kRate, 120.0, 4);
    c.nudge(0.1, 1.0);
    int64_t lastBeat = 0, beatsSeen = 0;
    for (int block = 0; block < static_cast<int>(5.0 * kRate / 256); ++block) {
        c.advance(256, [&](int64_t b, int) { EXPECT_EQ(b, lastBeat + 1); lastBeat = b; ++beatsSeen; });
        if (block == static_cast<int>(1.0 * kRate / 256)) { EXPECT_NEAR(c.beats(), 2.0 + 0.04, 0.01) << "after 1 s: 0.04 of the 0.1"; }
        EXPECT_DOUBLE_EQ(c.bpm(), 120.0);
    }
    EXPECT_NEAR(c.beats(), 10.0 + 0.1, 0.011);
    EXPECT_EQ(c.nudgeLeft(), 0.0);
    EXPECT_EQ(beatsSeen, 10);
    // Backwards as well.
    c.nudge(-0.05, 0.5);
    for (int block = 0; block < static_cast<int>(2.0 * kRate / 256); ++block) c.advance(256, [](int64_t, int) {});
    EXPECT_NEAR(c.beats(), 10.1 + 4.0 - 0.05, 0.011);
}

namespace {
double midiHz(int note) { return 440.0 * std::pow(2.0, (note - 69) / 12.0); }

// A piece of music made here: `pickup` beats of drums before the first downbeat, then bars of
// four beats, each a chord of `chords` (MIDI notes, cycled) with its root as bass, kick on 1 and
// 3, snare on 2 and 4, hats on the eighths.
std::vector<float> song(double bpm, double seconds, double pickup, const std::vector<std::vector<int>>& chords, unsigned seed) {
    std::vector<float> x(static_cast<size_t>(seconds * kRate), 0.0f);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> noise(-1.0f, 1.0f);
    const double beat = 60.0 / bpm * kRate, first = pickup * beat;
    auto add = [&](double at, double length, auto f) {
        if (at < 0) return;
        const auto start = static_cast<size_t>(std::llround(at));
        for (size_t i = 0; i < static_cast<size_t>(length * kRate) && start + i < x.size(); ++i) x[start + i] += f(static_cast<double>(i) / kRate);
    };
    for (int e = -static_cast<int>(std::ceil(pickup * 2)); first + e * beat / 2 < static_cast<double>(x.size()); ++e) {
        const double at = first + e * beat / 2;
        const int eighth = ((e % 8) + 8) % 8;
        add(at, 0.05, [&](double t) { return static_cast<float>(0.15 * noise(rng) * std::exp(-t * 80)); });
        if (eighth == 0 || eighth == 4)
            add(at, 0.25, [&](double t) { return static_cast<float>(0.7 * std::sin(2 * M_PI * (50 + 100 * std::exp(-t * 30)) * t) * std::exp(-t * 12)); });
        if (eighth == 2 || eighth == 6)
            add(at, 0.2, [&](double t) { return static_cast<float>((0.4 * noise(rng) + 0.2 * std::sin(2 * M_PI * 190 * t)) * std::exp(-t * 20)); });
    }
    for (int bar = 0; first + bar * 4 * beat < static_cast<double>(x.size()); ++bar) {
        const auto& c = chords[static_cast<size_t>(bar) % chords.size()];
        const double len = 4 * beat / kRate;
        for (int note : c)
            add(first + bar * 4 * beat, len, [&](double t) {
                double v = 0;
                for (int h = 1; h <= 4; ++h) v += 0.05 / h * std::sin(2 * M_PI * midiHz(note) * h * t);
                return static_cast<float>(v * std::min(1.0, t * 200) * std::min(1.0, (len - t) * 200));
            });
        add(first + bar * 4 * beat, len, [&](double t) {
            return static_cast<float>(0.2 * std::sin(2 * M_PI * midiHz(c.front() - 12) * t) * std::min(1.0, t * 200) * std::min(1.0, (len - t) * 200));
        });
    }
    return x;
}
const std::vector<std::vector<int>> kAMinor = {{57, 60, 64}, {62, 65, 69}, {64, 67, 71}, {57, 60, 64}}; // i iv v i
const std::vector<std::vector<int>> kEMajor = {{52, 56, 59}, {57, 61, 64}, {59, 63, 66}, {52, 56, 59}}; // I IV V I
} // namespace

TEST(MaterialAnalysis, TempoFirstDownbeatAndKeyOfAGeneratedSong) {
    int i = 0;
    for (double bpm : {90.0, 123.0, 140.0, 174.0}) {
        const double pickup = 1.5; // beats before the first downbeat
        const auto& chords = i % 2 ? kEMajor : kAMinor;
        const char* key = i % 2 ? "E" : "Am";
        ++i;
        const auto x = song(bpm, 30.0, pickup, chords, 11);
        const MaterialAnalysis a = analyseMaterial(x, kRate, 70.0, 180.0, 4);
        const double downbeat = pickup * 60.0 / bpm * kRate;
        std::printf("%5.1f BPM song in %s: %.2f BPM (confidence %.2f), first beat %.1f ms, first downbeat %.1f ms off (truth %.0f ms), key %s (%.0f %%), %zu beats\n",
                    bpm, key, a.bpm, a.confidence, static_cast<double>(a.firstBeat) / 48.0, (static_cast<double>(a.firstDownbeat) - downbeat) / 48.0, downbeat / 48.0,
                    a.key.c_str(), 100 * a.keyConfidence, a.beats.size());
        EXPECT_NEAR(a.bpm, bpm, 0.5);
        EXPECT_LT(std::fabs(static_cast<double>(a.firstDownbeat) - downbeat) / 48.0, 20.0);
        EXPECT_EQ(a.key, key);
    }
}

TEST(BufferAnalysis, BAnalyzeAnswersTempoDownbeatAndKeyKeepsThemAndRefusesWhatItCannotAnalyse) {
    OfflineServer s;
    TempDir dir;
    const double bpm = 123.0, pickup = 1.5, downbeat = pickup * 60.0 / bpm * kRate;
    const auto x = song(bpm, 20.0, pickup, kAMinor, 3);
    writeWav(dir.file("song.wav"), {x, x}, 48000);
    s.send("/b_allocRead", 1, dir.file("song.wav").c_str());
    s.send("/b_analyze", 1);
    s.render(256);
    ASSERT_EQ(s.find("/b_analysis").size(), 1u);
    const auto a = s.find("/b_analysis")[0];
    std::printf("/b_analysis %d %.2f %.2f %d %d %s (downbeat truth %.0f)\n", a.i(0), a.num(1), a.num(2), a.i(3), a.i(4), a.str(5).c_str(), downbeat);
    EXPECT_EQ(a.i(0), 1);
    EXPECT_NEAR(a.num(1), bpm, 0.5);
    EXPECT_GT(a.num(2), 0.5);
    EXPECT_LT(std::fabs(a.i(4) - downbeat) / 48.0, 20.0);
    EXPECT_EQ(a.str(5), "Am");
    // Kept: asked again, the same answer; the beats on request.
    s.send("/b_analyze", 1);
    s.send("/b_beats", 1);
    s.render(256);
    ASSERT_EQ(s.find("/b_analysis").size(), 2u);
    EXPECT_EQ(s.find("/b_analysis")[1].i(4), a.i(4));
    ASSERT_EQ(s.find("/b_beats.reply").size(), 1u);
    const auto beats = s.find("/b_beats.reply")[0];
    EXPECT_GE(beats.args.size(), 1u + 38u); // ~40 beats in 20 s at 123 BPM
    for (size_t k = 2; k < beats.args.size(); ++k) EXPECT_NEAR(beats.i(k) - beats.i(k - 1), 60.0 / bpm * kRate, 0.05 * kRate);
    // Changed data: no longer analysed; silent, short, missing: /fail with the reason.
    s.send("/b_zero", 1);
    s.send("/b_beats", 1);
    s.send("/b_analyze", 1);
    s.send("/b_alloc", 2, 48000, 1);
    s.send("/b_analyze", 2);
    s.send("/b_analyze", 3);
    s.render(256);
    const auto fails = s.find("/fail", "/b_analyze");
    ASSERT_EQ(fails.size(), 3u);
    std::string reasons;
    for (const auto& f : fails) reasons += f.str(1) + "\n";
    EXPECT_NE(reasons.find("buffer 1 is silent"), std::string::npos) << reasons;
    EXPECT_NE(reasons.find("buffer 2 is 1 s long: the analysis needs 3 s"), std::string::npos) << reasons;
    EXPECT_NE(reasons.find("buffer 3 is not loaded"), std::string::npos) << reasons;
    ASSERT_EQ(s.find("/fail", "/b_beats").size(), 1u);
    EXPECT_NE(s.find("/fail", "/b_beats")[0].str(1).find("not analysed"), std::string::npos);
}

TEST(BufferAnalysis, AnAlignedFollowerWithTheAnalysedTempoPutsTheDownbeatsOnTheBars) {
    // A 123 BPM song with 1.5 beats of pickup; the clock at 120. `bpm -1 follow 1 align 1`
    // started off the bar: wherever the clock crosses a bar line the player reads a downbeat of
    // the material (within 2 ms of material time), for a loop and a one-shot. (Varispeed: the
    // position read is the one heard. A stretched player's `start` reads the stretcher's input,
    // which leads what is heard by its latency in chunks: not measured here.)
    TempDir dir;
    const double bpm = 123.0, pickup = 1.5;
    const auto x = song(bpm, 20.0, pickup, kEMajor, 5);
    writeWav(dir.file("song.wav"), {x, x}, 48000);
    for (const char* method : {"rate"}) {
        for (int loop = 0; loop < 2; ++loop) {
            OfflineServer s;
            s.send("/b_allocRead", 1, dir.file("song.wav").c_str());
            s.send("/b_analyze", 1);
            s.render(256);
            ASSERT_EQ(s.find("/b_analysis").size(), 1u);
            const double downbeat = s.find("/b_analysis")[0].i(4), perBar = 4 * 60.0 / s.find("/b_analysis")[0].num(1) * kRate;
            const double truth = pickup * 60.0 / bpm * kRate;
            EXPECT_LT(std::fabs(downbeat - truth) / 48.0, 2.0) << "the analysed downbeat: " << (downbeat - truth) / 48.0 << " ms off";
            s.render(static_cast<int64_t>(0.7 * kRate)); // off the bar
            s.send("/s_new", "player", 100, 0, 0, "buf", 1, "loop", loop, "bpm", -1, "follow", 1, "align", 1, "stretch", method);
            double worst = 0.0, lo = 1e9, hi = -1e9;
            for (int bar = 1; bar <= 6; ++bar) {
                // Render up to the block holding bar line `bar` (beat 4 x bar), then read where the player is.
                const int64_t barSample = static_cast<int64_t>(bar * 4 * 0.5 * kRate);
                s.render(barSample - s.engine().sampleTime());
                s.send("/s_get", 100, "start"); // answered after the next block: where it stands then
                s.render(1);
                const double beatsNow = s.engine().stats().beats;
                const auto got = s.find("/n_set");
                ASSERT_FALSE(got.empty());
                const double pos = got.back().num(2);
                // Where a downbeat-on-the-bar grid puts the material now.
                const double want = downbeat + (beatsNow - bar * 4) * perBar / 4 + (bar - 1) * perBar;
                double err = std::fmod(pos - want, perBar);
                if (err > perBar / 2) err -= perBar;
                if (err < -perBar / 2) err += perBar;
                worst = std::max(worst, std::fabs(err));
                lo = std::min(lo, err);
                hi = std::max(hi, err);
            }
            std::printf("%s %s: the material's downbeats within %.3f ms of the clock's bars (%.3f..%.3f)\n", method,
                        loop ? "loop" : "one-shot", worst / 48.0, lo / 48.0, hi / 48.0);
            EXPECT_LT(worst / 48.0, 2.0) << method << " loop " << loop;
        }
    }
}

TEST(BufferAnalysis, AnAlignedStretchedFollowerSoundsItsDownbeatOnTheBars) {
    // What is heard (varispeed, rb3, rb2): material at 123 BPM whose bars start with a loud
    // burst (the other beats soft), its downbeat given as a frame (`downbeat`, no analysis), 1.5
    // beats of pickup; the clock at 120; the follower started off the bar. Every loud burst in the
    // output must start on a bar line of the clock (within 2 ms).
    const double bpm = 123.0, beat = 60.0 / bpm * kRate;
    const auto first = static_cast<int64_t>(std::llround(1.5 * beat));
    std::vector<float> x(static_cast<size_t>(first + 8 * 4 * beat), 0.0f);
    for (int k = 0; first + k * beat < static_cast<double>(x.size()) - 480; ++k)
        for (int i = 0; i < 480; ++i)
            x[static_cast<size_t>(std::llround(first + k * beat)) + static_cast<size_t>(i)] =
                (k % 4 == 0 ? 0.9f : 0.2f) * static_cast<float>(std::sin(i * 0.9) * std::exp(-i / 150.0));
    TempDir dir;
    writeWav(dir.file("bars.wav"), {x, x}, 48000);
    for (const char* method : {"rate", "rb3", "rb2"}) {
        OfflineServer s; // stretchers on this thread: the offline render waits for them
        s.send("/b_allocRead", 1, dir.file("bars.wav").c_str());
        s.render(static_cast<int64_t>(0.7 * kRate));
        s.send("/s_new", "player", 100, 0, 0, "buf", 1, "loop", 1, "bpm", 123.0f, "follow", 1, "align", 1, "downbeat", static_cast<int>(first),
               "stretch", method);
        s.render(static_cast<int64_t>(14.0 * kRate));
        // Loud bursts in the output (a stretcher smears single peaks, not the energy): where the
        // mean absolute value over the last 1 ms first passes 0.2 after 0.2 s below it.
        const auto& out = s.output[0];
        std::vector<int64_t> loud;
        int64_t last = -100000;
        double sum = 0.0;
        for (size_t i = 0; i < out.size(); ++i) {
            sum += std::fabs(out[i]) - (i >= 48 ? std::fabs(out[i - 48]) : 0.0f);
            if (sum / 48.0 > 0.2) {
                if (static_cast<int64_t>(i) - last > static_cast<int64_t>(0.2 * kRate)) loud.push_back(static_cast<int64_t>(i) - 24);
                last = static_cast<int64_t>(i);
            }
        }
        float peak = 0.0f;
        for (float v : out) peak = std::max(peak, std::fabs(v));
        ASSERT_GE(loud.size(), 5u) << method << ", output peak " << peak;
        double worst = 0.0;
        for (int64_t t : loud) {
            const double bar = 4 * 0.5 * kRate; // the clock's bar at 120 BPM (it starts at beat 0 on sample 0)
            const double off = static_cast<double>(t) - std::round(static_cast<double>(t) / bar) * bar;
            worst = std::max(worst, std::fabs(off));
        }
        std::printf("%s: %zu downbeats heard, the worst %.2f ms from a bar line\n", method, loud.size(), worst / 48.0);
        EXPECT_LT(worst / 48.0, 2.0) << method;
    }
}

TEST(TempoSource, TapTempoFromTimetagsAndSooperLoopersTapTempoFollowTheSource) {
    OfflineServer s;
    for (double t : {1.0, 1.4, 1.8, 2.2}) s.at(t, "/tempo_tap");
    s.render(static_cast<int64_t>(3.0 * kRate));
    EXPECT_NEAR(clockBpm(s), 150.0, 1e-3) << "taps 0.4 s apart";
    // After more than 2 s without a tap the count starts again; SooperLooper's global tap_tempo.
    for (double t : {5.0, 5.6, 6.2}) s.at(t, "/set", "tap_tempo", 1.0f);
    s.render(static_cast<int64_t>(4.0 * kRate));
    EXPECT_NEAR(clockBpm(s), 100.0, 1e-3) << "taps 0.6 s apart";
    // Another source leads: taps and SooperLooper's tempo are refused with the reason.
    s.send("/tempo_source", "analysis");
    s.send("/tempo_tap");
    s.send("/set", "tempo", 90.0f);
    s.render(256);
    ASSERT_EQ(s.find("/fail", "/tempo_tap").size(), 1u);
    EXPECT_NE(s.find("/fail", "/tempo_tap")[0].str(1).find("tempo source is analysis"), std::string::npos);
    EXPECT_EQ(s.find("/fail", "/set").size(), 1u);
    EXPECT_NEAR(clockBpm(s), 100.0, 1e-3);
}

TEST(LiveAnalysis, RestingThroughSilenceChangesNothing) {
    // 19 s of digital silence from the start, drums, 40 s of silence, drums, 21 s of silence,
    // drums: the /onset and /tempo_estimate messages of a render whose analysis rests through
    // the silence are those of one that analyses every zero, and the rest did happen.
    std::vector<float> x;
    auto append = [&](const std::vector<float>& y) { x.insert(x.end(), y.begin(), y.end()); };
    append(std::vector<float>(static_cast<size_t>(19.1 * kRate), 0.0f));
    append(drumLoop(123.0, 10.0, 5));
    append(std::vector<float>(static_cast<size_t>(40.3 * kRate), 0.0f));
    append(drumLoop(96.0, 12.0, 6));
    append(std::vector<float>(static_cast<size_t>(20.7 * kRate), 0.0f));
    append(drumLoop(140.0, 4.0, 7));
    auto run = [&](bool rest) {
        ControllerOptions o;
        o.analysis.restInSilence = rest;
        OfflineServer s(OfflineServer::defaultConfig(), {}, o);
        s.input = {x, x};
        s.send("/notify", 1);
        s.render(static_cast<int64_t>(x.size()));
        std::vector<std::string> out;
        for (const char* a : {"/onset", "/tempo_estimate"})
            for (const auto& m : s.find(a)) {
                std::string line = a;
                for (size_t i = 0; i < m.args.size(); ++i) {
                    char v[40];
                    std::snprintf(v, sizeof v, " %.17g", m.num(i));
                    line += v;
                }
                out.push_back(line);
            }
        return out;
    };
    const uint64_t before = LiveAnalysis::restedFrames();
    const auto rested = run(true);
    const uint64_t restedFrames = LiveAnalysis::restedFrames() - before;
    const auto full = run(false);
    std::printf("%zu messages; the analysis rested through %.1f s of the %.1f s of silence\n", rested.size(),
                static_cast<double>(restedFrames) / kRate, 80.1);
    EXPECT_GT(restedFrames, static_cast<uint64_t>(38.0 * kRate)); // all three silences (measured 41.x s)
    ASSERT_GT(full.size(), 20u);
    for (size_t i = 0; i < std::max(full.size(), rested.size()); ++i)
        EXPECT_EQ(i < rested.size() ? rested[i] : "-", i < full.size() ? full[i] : "-") << i;
}
