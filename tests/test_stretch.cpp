// stretch/: every engine keeps pitch and level while changing duration by the ratio
// (Rubber Band's TestStretcher measures the same: zero crossings and RMS of a stretched sine).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <thread>

#include <random>

#include <soundtouch/SoundTouch.h>

#include "server/engine/TempoClock.h"
#include "server/rt/SampleRing.h"
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

// Buffer 1: two seconds of a 440 Hz tone of `amplitude` (stereo); /notify on; the clock at 150 BPM.
void toneAt150(OfflineServer& s, TempDir& dir, double amplitude) {
    const auto x = sine(440.0, amplitude, 96000, 48000.0);
    writeWav(dir.file("s.wav"), {x, x}, 48000);
    s.send("/b_allocRead", 1, dir.file("s.wav").c_str());
    s.send("/notify", 1);
    s.send("/set_tempo", 150.0f);
}

} // namespace

class StretchEngines : public ::testing::TestWithParam<stretch::Method> {};

TEST_P(StretchEngines, KeepPitchAndLevelAndScaleDuration) {
    const auto x = sine(440.0, 0.5, 48000 * 3, 48000.0);
    for (double ratio : {0.8, 1.0, 1.25}) {
        auto s = stretch::Stretcher::create(GetParam(), 2, 48000.0, 4096, ratio, 1.0);
        ASSERT_TRUE(s);
        s->prime(ratio, 1.0);
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
    s->prime(1.0, std::pow(2.0, 7.0 / 12.0));
    const auto y = runStretch(*s, x, 1.0);
    EXPECT_NEAR(zeroCrossingHz(y, 9600, y.size() - 9600, 48000.0), 440.0 * std::pow(2.0, 7.0 / 12.0), 440.0 * 0.01);
}

TEST_P(StretchEngines, StartDelayIsCompensatedAtEveryRatio) {
    // Ten clicks stretched at a fixed ratio: each lands at its input position times the ratio,
    // on average within 3 ms (the engines' own jitter comes on top: WSOLA's seek moves single
    // clicks by a few ms). SoundTouch's latency is not all scaled by the ratio (see prime): it was
    // 25 ms x (1 - ratio) off, +11 ms at 0.5, -12 ms at 1.46.
    for (const double ratio : {0.5, 0.7, 0.85, 1.0, 1.15, 1.3, 1.45}) {
        std::vector<float> x(96000, 0.0f);
        for (int c = 0; c < 10; ++c)
            for (int k = 0; k < 48; ++k)
                x[static_cast<size_t>(4800 + c * 8000 + k)] = 0.8f * std::sin(static_cast<float>(k) * 0.9f) * (1.0f - static_cast<float>(k) / 48.0f);
        auto s = stretch::Stretcher::create(GetParam(), 2, 48000.0, 4096, ratio, 1.0);
        s->prime(ratio, 1.0);
        const auto y = runStretch(*s, x, ratio);
        double sum = 0.0;
        int found = 0;
        for (int c = 0; c < 10; ++c) {
            const double due = (4800 + c * 8000) * ratio;
            for (auto i = static_cast<size_t>(due) - 1200; i < static_cast<size_t>(due) + 1200; ++i)
                if (std::fabs(y[i]) > 0.1f) { sum += (static_cast<double>(i) - due) / 48.0; ++found; break; }
        }
        ASSERT_GE(found, 5) << stretch::methodName(GetParam()) << " " << ratio; // WSOLA at 0.5 smears some below 0.1
        std::printf("%s ratio %.2f: clicks %+.2f ms from their place on average (%d found)\n", stretch::methodName(GetParam()), ratio, sum / found, found);
        EXPECT_LT(std::fabs(sum / found), 3.0) << stretch::methodName(GetParam()) << " " << ratio;
    }
}

TEST_P(StretchEngines, TheInterleavedCallsGiveThePlanarCallsBits) {
    // The stretch threads feed and read the engines interleaved (the rings' layout): the same
    // stereo input (a tone left, noise right) through both kinds of call, with a ratio change
    // on the way, comes out bit for bit the same.
    const int frames = 48000 * 2;
    std::vector<float> l = sine(440.0, 0.4, static_cast<size_t>(frames), 48000.0), r(l.size()), inter(2 * l.size());
    std::mt19937 gen(7);
    std::uniform_real_distribution<float> noise(-0.3f, 0.3f);
    for (size_t i = 0; i < r.size(); ++i) {
        r[i] = noise(gen);
        inter[2 * i] = l[i];
        inter[2 * i + 1] = r[i];
    }
    auto planar = stretch::Stretcher::create(GetParam(), 2, 48000.0, 4096, 0.8, 1.0);
    auto interleaved = stretch::Stretcher::create(GetParam(), 2, 48000.0, 4096, 0.8, 1.0);
    planar->prime(0.8, 1.0);
    interleaved->prime(0.8, 1.0);
    std::vector<float> pl, pr, il, ir, oL(4096), oR(4096), oI(2 * 4096);
    size_t posP = 0, posI = 0;
    for (int round = 0; round < 20000 && (posP < l.size() || posI < l.size()); ++round) {
        if (round == 300) { planar->setTimeRatio(1.1); interleaved->setTimeRatio(1.1); }
        // Planar
        if (const int a = planar->available(); a > 0) {
            float* op[2] = {oL.data(), oR.data()};
            const int got = planar->retrieve(op, std::min(a, 700));
            pl.insert(pl.end(), oL.begin(), oL.begin() + got);
            pr.insert(pr.end(), oR.begin(), oR.begin() + got);
        } else if (posP < l.size()) {
            const int want = static_cast<int>(std::min<size_t>(static_cast<size_t>(planar->inputWanted()), l.size() - posP));
            const float* ip[2] = {l.data() + posP, r.data() + posP};
            planar->feed(ip, want);
            posP += static_cast<size_t>(want);
        }
        // Interleaved, the same calls
        if (const int a = interleaved->available(); a > 0) {
            const int got = interleaved->retrieveInterleaved(oI.data(), std::min(a, 700));
            for (int i = 0; i < got; ++i) {
                il.push_back(oI[static_cast<size_t>(2 * i)]);
                ir.push_back(oI[static_cast<size_t>(2 * i + 1)]);
            }
        } else if (posI < l.size()) {
            const int want = static_cast<int>(std::min<size_t>(static_cast<size_t>(interleaved->inputWanted()), l.size() - posI));
            interleaved->feedInterleaved(inter.data() + 2 * posI, want);
            posI += static_cast<size_t>(want);
        }
    }
    ASSERT_GT(pl.size(), 48000u) << stretch::methodName(GetParam());
    ASSERT_EQ(pl.size(), il.size()) << stretch::methodName(GetParam());
    size_t differ = 0;
    for (size_t i = 0; i < pl.size(); ++i) differ += (pl[i] != il[i]) + (pr[i] != ir[i]);
    EXPECT_EQ(differ, 0u) << stretch::methodName(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Engines, StretchEngines,
                         ::testing::Values(stretch::Method::Rb2, stretch::Method::Rb3, stretch::Method::Wsola),
                         [](const ::testing::TestParamInfo<stretch::Method>& p) { return std::string(stretch::methodName(p.param)); });

TEST(SoundTouch, ItsAntiAliasFilterPassesTheSignalAtPitchOne) {
    // loopd turns SoundTouch's anti-alias filter off at pitch 1 (a third of a WSOLA voice's
    // cost, see Stretcher.cpp): at rate 1 the filter is a windowed sinc cut at Nyquist, which
    // passes the signal. Measured on SoundTouch itself: a tone plus noise stretched by 1.25 with
    // the filter and without differs by less than 1e-3 (2.3.2: 1.3e-4), sample for sample.
    auto run = [](bool filter) {
        soundtouch::SoundTouch st;
        st.setChannels(2);
        st.setSampleRate(48000);
        st.setSetting(SETTING_SEQUENCE_MS, 40);
        st.setSetting(SETTING_SEEKWINDOW_MS, 15);
        st.setSetting(SETTING_OVERLAP_MS, 8);
        st.setSetting(SETTING_USE_AA_FILTER, filter ? 1 : 0);
        st.setTempo(1.25);
        std::mt19937 gen(3);
        std::uniform_real_distribution<float> noise(-0.05f, 0.05f);
        std::vector<float> in(2 * 48000 * 3), out(in.size());
        for (size_t i = 0; i < in.size(); ++i) in[i] = 0.3f * std::sin(static_cast<float>(i / 2) * 0.0576f) + noise(gen);
        st.putSamples(in.data(), 48000 * 3);
        st.flush();
        out.resize(2 * st.receiveSamples(out.data(), 48000 * 3));
        return out;
    };
    const auto with = run(true), without = run(false);
    ASSERT_GT(with.size(), 2u * 100000u);
    ASSERT_EQ(with.size(), without.size());
    float worst = 0.0f;
    for (size_t i = 0; i < with.size(); ++i) worst = std::max(worst, std::fabs(with[i] - without[i]));
    std::printf("SoundTouch at pitch 1, anti-alias filter on vs off: worst difference %.2g\n", static_cast<double>(worst));
    EXPECT_LT(worst, 1e-3f);
}

TEST(SampleRing, InterleavedInPlanarOutAcrossTheWrap) {
    // The stretch rings: interleaved frames in (by regions), planar out, in pieces that straddle
    // the wrap.
    SampleRing ring(100, 2);
    std::vector<float> in(2 * 37), l(53), r(53);
    float* out[2] = {l.data(), r.data()};
    int sent = 0, got = 0;
    for (int round = 0; round < 200; ++round) {
        for (int i = 0; i < 37; ++i) { in[static_cast<size_t>(2 * i)] = static_cast<float>(sent + i); in[static_cast<size_t>(2 * i + 1)] = -static_cast<float>(sent + i); }
        for (int k = 0; k < 37;) { // as the player and the stretch threads write: up to the wrap
            float* at = nullptr;
            const int run = std::min(37 - k, static_cast<int>(ring.writeRegion(at)));
            if (run == 0) break;
            std::copy_n(in.data() + 2 * k, 2 * run, at);
            ring.commitWrite(static_cast<size_t>(run));
            k += run;
            sent += run;
        }
        const size_t n = ring.readPlanar(out, 53);
        for (size_t i = 0; i < n; ++i, ++got) {
            ASSERT_EQ(l[i], static_cast<float>(got));
            ASSERT_EQ(r[i], -static_cast<float>(got));
        }
    }
    EXPECT_GT(got, 7000);
    EXPECT_LE(sent - got, 100);
}

TEST(StretchNames, AcceptTheOriginalServersNames) {
    EXPECT_EQ(stretch::methodFromName("playback_rate"), stretch::Method::Rate);
    EXPECT_EQ(stretch::methodFromName("pyrubberband"), stretch::Method::Rb2);
    EXPECT_EQ(stretch::methodFromName("audiotsm"), stretch::Method::Wsola);
    EXPECT_EQ(stretch::methodFromName("rb3"), stretch::Method::Rb3);
    EXPECT_FALSE(stretch::methodFromName("paulstretch"));
}

// ---------------------------------------------------------------------------------------------
// The player's stretched read side.

namespace {
const char* kMethods[] = {"rb2", "rb3", "wsola"};
}

TEST(StretchedPlayer, FollowingATempoChangeKeepsThePitch) {
    for (const char* method : kMethods) {
        OfflineServer s;
        TempDir dir;
        const auto x = sine(400.0, 0.5, 48000, 48000.0);
        writeWav(dir.file("s.wav"), {x, x}, 48000);
        s.send("/b_allocRead", 1, dir.file("s.wav").c_str());
        s.send("/s_new", "player", 5, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0f, "stretch", method);
        s.send("/set_tempo", 150.0f); // varispeed would play 500 Hz
        s.render(48000 * 2);
        EXPECT_TRUE(s.find("/fail").empty());
        EXPECT_NEAR(zeroCrossingHz(s.output[0], 24000, 96000, 48000.0), 400.0, 400.0 * 0.005) << method;
        const double level = 20 * std::log10(rms(s.output[0], 24000, 96000) / (0.5 / std::sqrt(2.0)));
        std::printf("%s following 120 -> 150 BPM: %.2f Hz, %+.2f dB\n", method, zeroCrossingHz(s.output[0], 24000, 96000, 48000.0), level);
        // (R2 with its standard window fell 2.7 dB here after the ratio changed mid-stream: the
        // reason it runs with OptionWindowShort.)
        EXPECT_NEAR(level, 0.0, 1.0) << method;
    }
}

TEST(StretchedPlayer, AOneShotLastsItsLengthOverTheSpeed) {
    for (const char* method : kMethods) {
        OfflineServer s;
        TempDir dir;
        const auto x = sine(300.0, 0.4, 48000, 48000.0);
        writeWav(dir.file("s.wav"), {x, x}, 48000);
        s.send("/b_allocRead", 1, dir.file("s.wav").c_str());
        s.send("/notify", 1);
        s.send("/set_tempo", 150.0f); // speed 1.25: one second of material lasts 0.8 s
        s.send("/s_new", "player", 5, 0, 0, "buf", 1, "follow", 1, "stretch", method);
        s.render(48000 * 2);
        const auto go = s.find("/n_go"), end = s.find("/n_end");
        ASSERT_EQ(go.size(), 1u);
        ASSERT_EQ(end.size(), 1u) << method;
        const double frames = end[0].num(5) - go[0].num(5);
        std::printf("%s one-shot at speed 1.25: %.0f frames (ideal 38400, %+.2f %%)\n", method, frames, 100.0 * (frames / 38400.0 - 1.0));
        // Timed from the output side: the fade ends on the last real frame (offline: exact).
        EXPECT_NEAR(frames, 38400.0, 1.0) << method;
    }
}

TEST(StretchedPlayer, AStalledWorkerIsCoveredByVarispeedReportedAndContinuous) {
    // Artificial load: the stretch worker keeps up at real-time pace, then stops altogether.
    EngineConfig cfg = OfflineServer::defaultConfig();
    cfg.stretchAhead = true;
    OfflineServer s(cfg);
    TempDir dir;
    toneAt150(s, dir, 0.4);
    s.send("/s_new", "player", 5, 0, 0, "buf", 1, "loop", 1, "follow", 1, "stretch", "rb2");
    for (int b = 0; b < 450; ++b) { // 0.6 s at real-time pace
        s.render(64);
        std::this_thread::sleep_for(std::chrono::microseconds(1333));
    }
    const uint64_t before = s.engine().stats().stretchUnderruns;
    s.stretchWorker()->stop();
    s.render(48000 * 3 / 10);
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    s.render(64);
    const uint64_t after = s.engine().stats().stretchUnderruns;
    std::printf("stalled worker: %llu underruns before, %llu after\n", static_cast<unsigned long long>(before), static_cast<unsigned long long>(after));
    EXPECT_GT(after, before + 100) << "every block of the stall is an underrun";
    EXPECT_FALSE(s.find("/stretch_underrun").empty()) << "reported to /notify clients";
    s.send("/status");
    ASSERT_FALSE(s.find("/status.reply").empty());
    EXPECT_EQ(static_cast<uint64_t>(s.find("/status.reply").back().i(21)), after);
    // Never silence, never a click: the cover plays on (at varispeed, 1.25 x the tone: 550 Hz),
    // starting where it best continues the stretched output's waveform, and the splices are
    // smoothed. (Without the alignment the step was up to 1.35 x the tone's own, by chance of phase.)
    const auto& out = s.output[0];
    const size_t from = 48000 * 3 / 10, to = out.size();
    EXPECT_GT(rms(out, to - 48000 * 3 / 10, to), 0.2);
    const float own = maxStep(sine(550.0, 0.4, 4800, 48000.0));
    EXPECT_LT(maxStep(out, from, to), 1.1f * own) << "a step above the signal's own";
}

TEST(StretchedPlayer, LatencyIsCompensatedSoThatAClickLandsOnItsSample) {
    // A click at frame 4800 of the material; the player starts at 0.1 s: the click is due at
    // 9600. Rubber Band R3 must be within 2 ms, R2 and WSOLA within 8 ms (their own jitter).
    for (const char* method : kMethods) {
        OfflineServer s;
        TempDir dir;
        std::vector<float> click(48000, 0.0f);
        for (int k = 0; k < 48; ++k) click[static_cast<size_t>(4800 + k)] = 0.8f * std::sin(static_cast<float>(k) * 0.9f) * (1.0f - static_cast<float>(k) / 48.0f);
        writeWav(dir.file("c.wav"), {click, click}, 48000);
        s.send("/b_allocRead", 1, dir.file("c.wav").c_str());
        s.packet(bundleAt(0.1, {msg("/s_new", "player", 5, 0, 0, "buf", 1, "stretch", method)}));
        s.render(48000);
        // Onset: the first sample above a quarter of the click's peak.
        const float peak = maxAbs(s.output[0]);
        int64_t onset = -1;
        for (size_t i = 0; i < s.output[0].size(); ++i) if (std::fabs(s.output[0][i]) > peak * 0.25f) { onset = static_cast<int64_t>(i); break; }
        const double errorMs = (static_cast<double>(onset) - 9600.0) / 48.0;
        std::printf("%s: click onset error %.2f ms\n", method, errorMs);
        EXPECT_LT(std::fabs(errorMs), std::string(method) == "rb3" ? 2.0 : 8.0) << method;
    }
}

TEST(TempoForecast, PredictsTheClockThroughScheduledJumpsRampsAndFollows) {
    // The forecast from sample 0 must match the clock that actually runs those commands at their
    // samples (block by block, as the engine does), to rounding.
    TempoClock real;
    real.prepare(48000.0, 120.0, 4);
    TempoForecast f;
    const TempoForecast::Change changes[] = {{3000, 2, 90.0, 0.0, 0.0, 2},  // follow (added out of order)
                                             {1000, 1, 140.0, 0.0, 0.0, 0}, // jump
                                             {2000, 3, 100.0, 0.5, 0.0, 1}, // ramp over 0.5 s
                                             {9000, 4, 60.0, 0.0, 0.0, 0}}; // beyond the horizon
    for (const auto& c : changes) ASSERT_TRUE(f.add(c));
    double beats = 0.0, bpm = 0.0;
    f.predict(real, 0, 8000, beats, bpm);
    auto none = [](int64_t, int) {};
    int64_t t = 0;
    for (const int64_t at : {1000, 2000, 3000}) {
        for (; t + 64 <= at; t += 64) real.advance(64, none);
        if (at > t) { real.advance(static_cast<int>(at - t), none); t = at; }
        if (at == 1000) real.apply(0, 140.0, 0.0, 0.0);
        if (at == 2000) real.apply(1, 100.0, 0.5, 0.0);
        if (at == 3000) real.apply(2, 90.0, 0.0, 0.0);
    }
    for (; t + 64 <= 8000; t += 64) real.advance(64, none);
    real.advance(static_cast<int>(8000 - t), none);
    EXPECT_NEAR(beats, real.beats(), 1e-9);
    EXPECT_NEAR(bpm, real.bpm(), 1e-9);
    EXPECT_GT(std::fabs(beats - 8000.0 / 48000.0 * 2.0), 0.01); // the changes did move it
    // Ran commands leave the forecast; a full forecast refuses more (that change is not foreseen).
    f.remove(1);
    f.remove(3);
    EXPECT_EQ(f.size(), 2);
    for (int i = f.size(); i < TempoForecast::kMax; ++i) ASSERT_TRUE(f.add({20000 + i, 100u + static_cast<uint64_t>(i), 120.0, 0.0, 0.0, 0}));
    EXPECT_FALSE(f.add({30000, 999, 120.0, 0.0, 0.0, 0}));
}

// ---------------------------------------------------------------------------------------------
// Beat-grid lock: a 120 BPM click track following the clock through steps and ramps.

namespace {
struct LockResult { double worstMs; double meanMs; int beats; };

// Tempo scripts: A steps on a beat and ramps up then down; B steps down between beats, ramps up
// steeply and steps down again 47 ms before a beat. Both are timetagged (sent ahead, as clients
// do); L is A sent live, each command when its moment has come.
// `paceUs` > 0: the real-time path (a worker renders ahead) at that many microseconds per block.
LockResult clickTrackOnTheGrid(const char* method, char script = 'A', int blockSize = 64, int paceUs = 0) {
    EngineConfig cfg = OfflineServer::defaultConfig();
    cfg.blockSize = blockSize;
    cfg.stretchAhead = paceUs > 0;
    OfflineServer s(cfg);
    auto run = [&](double seconds) {
        if (paceUs == 0) { s.renderSeconds(seconds); return; }
        for (int64_t n = static_cast<int64_t>(seconds * 48000.0) / blockSize; n > 0; --n) {
            s.render(blockSize);
            std::this_thread::sleep_for(std::chrono::microseconds(paceUs));
        }
    };
    TempDir dir;
    std::vector<float> clicks(24000 * 8, 0.0f); // eight beats at 120 BPM, a click on each
    for (int b = 0; b < 8; ++b)
        for (int k = 0; k < 48; ++k)
            clicks[static_cast<size_t>(b * 24000 + k)] = 0.8f * std::sin(static_cast<float>(k) * 0.9f) * (1.0f - static_cast<float>(k) / 48.0f);
    writeWav(dir.file("clicks.wav"), {clicks, clicks}, 48000);
    s.send("/b_allocRead", 1, dir.file("clicks.wav").c_str());
    s.send("/notify", 1);
    s.send("/s_new", "player", 5, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0f, "stretch", method);
    if (script == 'A') {
        s.packet(bundleAt(2.0, {msg("/set_tempo", 140.0f)}));    // a step
        s.packet(bundleAt(5.0, {msg("/tempo", 130.0f, 2.0f)}));  // a ramp
        s.packet(bundleAt(8.0, {msg("/tempo", 105.0f, 1.0f)}));  // a ramp down
        run(12.0);
    } else if (script == 'B') {
        s.packet(bundleAt(2.2, {msg("/set_tempo", 100.0f)}));    // a step down between beats
        s.packet(bundleAt(4.0, {msg("/tempo", 150.0f, 3.0f)}));  // a steep ramp
        s.packet(bundleAt(8.3, {msg("/set_tempo", 128.0f)}));    // a step down again
        run(12.0);
    } else {
        run(2.0);
        s.send("/set_tempo", 140.0f);
        run(3.0);
        s.send("/tempo", 130.0f, 2.0f);
        run(3.0);
        s.send("/tempo", 105.0f, 1.0f);
        run(4.0);
    }
    const auto& y = s.output[0];
    LockResult r{0.0, 0.0, 0};
    for (const auto& beat : s.find("/beat")) {
        const auto at = static_cast<int64_t>(beat.num(3));
        if (at + 2400 >= static_cast<int64_t>(y.size())) break;
        // The onset nearest the beat: the first sample above a quarter of the click's peak
        // within 20 ms either side.
        int64_t onset = -1;
        for (int64_t i = at - 960; i < at + 960; ++i)
            if (std::fabs(y[static_cast<size_t>(i)]) > 0.2f) { onset = i; break; }
        if (onset < 0) { r.worstMs = 1e9; break; }
        const double ms = static_cast<double>(onset - at) / 48.0;
        if (std::getenv("LOOPD_BEATS")) std::printf("  %c %s beat at %.3f s: %+.2f ms\n", script, method, static_cast<double>(at) / 48000.0, ms);
        r.worstMs = std::max(r.worstMs, std::fabs(ms));
        r.meanMs += ms;
        ++r.beats;
    }
    if (r.beats) r.meanMs /= r.beats;
    return r;
}
} // namespace

TEST(BeatGrid, FollowingPlayersStayOnTheClocksBeatsThroughStepsAndRamps) {
    // Targets: within 2 ms for rate and rb3, 8 ms for rb2 and wsola, and not offset as a
    // whole. The lock is a Smith predictor aimed at the moment new input will sound, with the
    // tempo changes scheduled by then (see Player::renderStretched). LOOPD_BEATS=1 prints every
    // beat. Block 64 for all three scripts, and the hardest (B) at JACK's usual 256.
    for (const char* method : {"rate", "rb3", "rb2", "wsola"}) {
        LockResult r{0.0, 0.0, 1 << 30};
        std::printf("%-5s:", method);
        for (const auto& [script, block] : {std::pair{'A', 64}, {'B', 64}, {'L', 64}, {'B', 256}}) {
            const LockResult x = clickTrackOnTheGrid(method, script, block);
            std::printf("  %c/%d %d beats, worst %.2f ms, mean %+.2f ms;", script, block, x.beats, x.worstMs, x.meanMs);
            r.beats = std::min(r.beats, x.beats);
            r.worstMs = std::max(r.worstMs, x.worstMs);
            if (std::fabs(x.meanMs) > std::fabs(r.meanMs)) r.meanMs = x.meanMs;
        }
        std::printf("\n");
        const std::string m = method;
        EXPECT_GE(r.beats, 20) << method;
        EXPECT_LT(r.worstMs, m == "rate" || m == "rb3" ? 2.0 : 8.0) << method;
        EXPECT_LT(std::fabs(r.meanMs), m == "rate" ? 0.1 : 1.5) << method; // not offset as a whole
    }
}

// ---------------------------------------------------------------------------------------------
// The real-time path: the worker renders ahead into rings. Here the test plays the worker itself
// (one pass per 256-frame block, after the block), so the run is deterministic.

namespace {
std::vector<float> clickTrack(int beats) {
    std::vector<float> clicks(static_cast<size_t>(24000 * beats), 0.0f); // 120 BPM
    for (int b = 0; b < beats; ++b)
        for (int k = 0; k < 48; ++k)
            clicks[static_cast<size_t>(b * 24000 + k)] = 0.8f * std::sin(static_cast<float>(k) * 0.9f) * (1.0f - static_cast<float>(k) / 48.0f);
    return clicks;
}
int64_t onsetNear(const std::vector<float>& y, int64_t at) {
    for (int64_t i = std::max<int64_t>(0, at - 960); i < at + 960 && i < static_cast<int64_t>(y.size()); ++i)
        if (std::fabs(y[static_cast<size_t>(i)]) > 0.2f) return i;
    return -1;
}
struct RealTimeRig {
    EngineConfig cfg = [] {
        EngineConfig c = OfflineServer::defaultConfig();
        c.blockSize = 256;
        c.stretchAhead = true;
        return c;
    }();
    OfflineServer s{cfg};
    TempDir dir;
    explicit RealTimeRig(float bpm) {
        s.stretchWorker()->stop(); // the test steps the worker
        s.send("/set_tempo", bpm);
        const auto clicks = clickTrack(16);
        writeWav(dir.file("clicks.wav"), {clicks, clicks}, 48000);
        s.send("/b_allocRead", 1, dir.file("clicks.wav").c_str());
        s.send("/notify", 1);
        s.render(256);
    }
    // Buffer `buf`: two seconds of a 440 Hz tone of `amplitude`, stereo.
    void loadTone(int buf, double amplitude) {
        const auto x = sine(440.0, amplitude, 96000, 48000.0);
        writeWav(dir.file("s.wav"), {x, x}, 48000);
        s.send("/b_allocRead", buf, dir.file("s.wav").c_str());
    }
    void run(double seconds) {
        for (int64_t n = static_cast<int64_t>(seconds * 48000.0) / 256; n > 0; --n) {
            s.render(256);
            s.stretchWorker()->stepAll();
        }
    }
};
} // namespace

TEST(RealTimePath, AScheduledFollowerSoundsFromItsTimetagAndStaysOnTheBeats) {
    // A follower timetagged for 3.0 s (a beat of the 140 BPM clock) pre-rolls its stretcher, so
    // that its first click sounds on 3.0 s, not a pre-roll later; a timetagged tempo step between
    // beats (5.1 s, to 110) is met on its sample. Every onset against the clock's /beat.
    for (const char* method : kMethods) {
        RealTimeRig r(140.0f);
        r.s.packet(bundleAt(3.0, {msg("/s_new", "player", 5, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0f, "fade", 0.0f, "stretch", method)}));
        r.s.packet(bundleAt(5.1, {msg("/set_tempo", 110.0f)}));
        r.run(9.0);
        const auto& y = r.s.output[0];
        double worst = 0.0;
        int beats = 0;
        for (const auto& beat : r.s.find("/beat")) {
            const auto at = static_cast<int64_t>(beat.num(3));
            if (at < 144000 || at + 2400 >= static_cast<int64_t>(y.size())) continue;
            const int64_t onset = onsetNear(y, at);
            EXPECT_GE(onset, 0) << method << ": no click within 20 ms of the beat at " << at;
            if (onset < 0) continue;
            worst = std::max(worst, std::fabs(static_cast<double>(onset - at) / 48.0));
            if (std::getenv("LOOPD_BEATS")) std::printf("  %s beat at %.3f s: %+.2f ms\n", method, static_cast<double>(at) / 48000.0, static_cast<double>(onset - at) / 48.0);
            ++beats;
        }
        const int64_t first = onsetNear(y, 144000);
        std::printf("%-5s scheduled: first click %+.2f ms from its timetag, %d beats, worst %.2f ms\n", method,
                    static_cast<double>(first - 144000) / 48.0, beats, worst);
        EXPECT_GE(beats, 10) << method;
        EXPECT_LT(worst, std::string(method) == "rb3" ? 2.0 : 8.0) << method;
        EXPECT_EQ(r.s.engine().stats().stretchUnderruns, 0u) << method;
    }
}

TEST(RealTimePath, AnImmediateFollowerCatchesUpWithItsGridAtOnce) {
    // Started without a timetag, a follower's grid begins on the sample it was created; its
    // stretcher's output comes later (the pre-roll): the output the grid has already passed is
    // dropped (with a fade-in), so every later click is on the grid instead of a pre-roll late.
    for (const char* method : kMethods) {
        RealTimeRig r(140.0f);
        r.run(1.0);
        // From 50 ms of material before a click: the first click is due 43 ms after the start.
        r.s.send("/s_new", "player", 5, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0f, "startFrac", 21600.0f / 384000.0f, "stretch", method);
        r.run(4.0);
        const auto go = r.s.find("/n_go");
        ASSERT_EQ(go.size(), 1u);
        const auto start = static_cast<int64_t>(go[0].num(5));
        const auto& y = r.s.output[0];
        double worst = 0.0;
        for (int k = 0; k < 6; ++k) {
            const auto due = start + static_cast<int64_t>(std::llround((2400.0 + 24000.0 * k) * 120.0 / 140.0));
            const int64_t onset = onsetNear(y, due);
            ASSERT_GE(onset, 0) << method << ": no click within 20 ms of click " << k;
            worst = std::max(worst, std::fabs(static_cast<double>(onset - due) / 48.0));
        }
        std::printf("%-5s immediate: clicks 0-5 (the first 43 ms after the start) worst %.2f ms off the grid begun at its start\n", method, worst);
        EXPECT_LT(worst, std::string(method) == "rb3" ? 2.0 : 8.0) << method;
        EXPECT_EQ(r.s.engine().stats().stretchUnderruns, 0u) << method;
    }
}

TEST(RealTimePath, CatchingUpFadesIn) {
    // The catch-up drops output, so the first frame that sounds is mid-waveform: it fades in.
    for (const char* method : kMethods) {
        RealTimeRig r(140.0f);
        r.loadTone(2, 0.5);
        r.run(0.5);
        r.s.send("/s_new", "player", 6, 0, 0, "buf", 2, "loop", 1, "follow", 1, "bpm", 120.0f, "stretch", method);
        r.run(0.5);
        const auto start = static_cast<int64_t>(r.s.find("/n_go").at(0).num(5));
        const auto& y = r.s.output[0];
        const float own = maxStep(sine(440.0, 0.5, 4800, 48000.0));
        const float step = maxStep(y, static_cast<size_t>(start), static_cast<size_t>(start) + 9600);
        std::printf("%-5s: largest step in the first 0.2 s %.4f (the tone's own %.4f)\n", method, step, own);
        EXPECT_LT(step, 1.5f * own) << method;
        EXPECT_GT(rms(y, static_cast<size_t>(start) + 4800, static_cast<size_t>(start) + 9600), 0.2) << method;
    }
}

TEST(StretchWorkerPool, SpreadsVoicesOverItsThreadsAndEachThreadRendersItsOwn) {
    // Seven voices on three threads: 3/2/2; each thread stretches the voices it owns (output
    // appears on every voice), and a removed voice is no longer stepped.
    StretchWorker pool;
    pool.start(3);
    ASSERT_EQ(pool.threads(), 3);
    std::vector<std::unique_ptr<StretchVoice>> voices;
    for (int i = 0; i < 7; ++i) {
        voices.push_back(std::make_unique<StretchVoice>(stretch::Stretcher::create(stretch::Method::Wsola, 2, 48000.0, 4096, 0.8, 1.0)));
        pool.add(voices.back().get());
    }
    auto counts = pool.voicesPerThread();
    std::sort(counts.begin(), counts.end());
    EXPECT_EQ(counts, (std::vector<int>{2, 2, 3}));
    const auto x = sine(440.0, 0.3, 8192, 48000.0);
    const float* planar[2] = {x.data(), x.data()};
    for (auto& v : voices) {
        v->timeRatio.store(0.8);
        v->input.writePlanar(planar, 0, x.size(), 2);
        v->realPushed.store(static_cast<int64_t>(x.size()));
        v->primeRequest.store(1);
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto allHaveOutput = [&] {
        for (auto& v : voices) if (v->output.readableFrames() < 2048) return false;
        return true;
    };
    while (!allHaveOutput() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10))
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(allHaveOutput()) << "every voice is stepped by its thread";
    pool.remove(voices[0].get());
    const size_t before = voices[0]->output.readableFrames();
    voices[0]->input.writePlanar(planar, 0, x.size(), 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(voices[0]->output.readableFrames(), before) << "a removed voice is left alone";
    counts = pool.voicesPerThread();
    EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), 0), 6);
    pool.stop();
}

namespace {
// A stretcher that does no DSP and writes down, in a log shared by several, which one worked.
class LoggingStretcher final : public stretch::Stretcher {
public:
    LoggingStretcher(char name, std::string& log) : name_(name), log_(log) { channels_ = 2; maxFeed_ = 4096; }
    void prime(double, double) noexcept override {}
    void setTimeRatio(double) noexcept override {}
    void setPitchScale(double) noexcept override {}
    int inputWanted() const noexcept override { return 512; }
    void feed(const float* const*, int n) noexcept override { held_ += n; log_ += name_; }
    int available() const noexcept override { return held_; }
    int retrieve(float* const* out, int n) noexcept override {
        const int k = std::min(n, held_);
        for (int c = 0; c < 2; ++c) std::fill(out[c], out[c] + k, 0.0f);
        held_ -= k;
        return k;
    }
    void feedInterleaved(const float*, int n) noexcept override { held_ += n; log_ += name_; }
    int retrieveInterleaved(float* out, int n) noexcept override {
        const int k = std::min(n, held_);
        std::fill(out, out + 2 * k, 0.0f);
        held_ -= k;
        return k;
    }
    int startDelay() const noexcept override { return 0; }
    stretch::Method method() const noexcept override { return stretch::Method::Wsola; }

private:
    char name_;
    std::string& log_;
    int held_ = 0;
};
} // namespace

TEST(StretchWorkerPool, TheVoiceClosestToRunningDryIsServedFirst) {
    // One pass over three voices, one hop (512 frames) at a time: the sounding voice with 1024
    // frames left ('a') goes first; the voice still in its pre-roll ('c', nothing yet) counts
    // 2048 frames more than it has (a late start is not an underrun); the sounding one with 3072
    // ('b') waits until the others have as much in hand. Stepped one voice after another, as
    // before, a voice with much to do could take the whole pass while another ran dry.
    std::string log;
    StretchWorker pool; // never started: stepAll() is the pass
    std::vector<std::unique_ptr<StretchVoice>> v;
    const std::vector<float> silence(8192, 0.0f);
    const float* planar[2] = {silence.data(), silence.data()};
    for (char name : {'a', 'b', 'c'}) {
        v.push_back(std::make_unique<StretchVoice>(std::make_unique<LoggingStretcher>(name, log)));
        v.back()->input.writePlanar(planar, 0, 8192, 2);
        v.back()->realPushed.store(8192);
        v.back()->primeRequest.store(1);
        pool.add(v.back().get());
    }
    v[0]->output.writePlanar(planar, 0, 1024, 2);
    v[0]->playing.store(true);
    v[1]->output.writePlanar(planar, 0, 3072, 2);
    v[1]->playing.store(true);
    pool.stepAll();
    ASSERT_GE(log.size(), 12u) << log;
    EXPECT_EQ(log.substr(0, 2), "aa") << log;  // 1024 -> 2048: level with 'c'
    const std::string beforeB = log.substr(0, log.find('b'));
    // 'b' waits until 'a' has 3072 (4 hops) and 'c' 1024 + 2048 (2 hops); ties go either way.
    EXPECT_GE(std::count(beforeB.begin(), beforeB.end(), 'a'), 4) << log;
    EXPECT_GE(std::count(beforeB.begin(), beforeB.end(), 'c'), 2) << log;
    EXPECT_LE(beforeB.size(), 9u) << log; // and no longer than one hop past that
    for (char name : {'a', 'b', 'c'}) EXPECT_EQ(std::count(log.begin(), log.end(), name), 16) << log; // all the input, in the end
    for (auto& x : v) pool.remove(x.get());
}

TEST(RealTimePath, TheFillTargetGrowsUntilASlowWorkerNoLongerUnderruns) {
    // The worker gets round only every 12 blocks (64 ms): more than the 2048 frames kept in flight
    // at first, so the first gaps underrun (covered by varispeed); the target then grows (an
    // emergency doubles it, an urgent fill raises it) and from then on nothing underruns.
    for (const char* method : kMethods) {
        RealTimeRig r(150.0f);
        r.s.send("/s_new", "player", 5, 0, 0, "buf", 1, "loop", 1, "follow", 1, "stretch", method);
        uint64_t early = 0;
        for (int b = 0; b < 750; ++b) { // 4 s
            r.s.render(256);
            if (b % 12 == 0) r.s.stretchWorker()->stepAll();
            if (b == 188) early = r.s.engine().stats().stretchUnderruns; // after 1 s
        }
        const uint64_t late = r.s.engine().stats().stretchUnderruns - early;
        std::printf("%-5s: a worker every 64 ms: %llu underruns in the first second, %llu in the next three\n", method,
                    static_cast<unsigned long long>(early), static_cast<unsigned long long>(late));
        EXPECT_GT(early, 0u) << method;
        EXPECT_EQ(late, 0u) << method;
        EXPECT_GT(rms(r.s.output[0], r.s.output[0].size() - 48000, r.s.output[0].size()), 0.01) << method;
    }
}

TEST(LoadShedding, ThePolicyShedsOnlyAThreadThatCannotKeepUpAndTakesBackAfterACalmSpell) {
    using A = ShedPolicy::Action;
    ShedPolicy p;
    // Starved by others (little of a core used, voices ran dry): nothing to gain by shedding.
    EXPECT_EQ(p.decide(0.35, 400, -1.0), A::None);
    // Busy and running dry: shed one, let a window settle, and twice as many each time that was
    // not enough (1, 2, 4, ... at most 16).
    EXPECT_EQ(p.decide(0.97, 120, -1.0), A::Shed);
    EXPECT_EQ(p.amount, 1);
    EXPECT_EQ(p.decide(0.95, 30, 0.2), A::None);
    EXPECT_EQ(p.decide(0.93, 8, 0.2), A::Shed);
    EXPECT_EQ(p.amount, 2);
    EXPECT_EQ(p.decide(0.95, 10, 0.2), A::None);
    EXPECT_EQ(p.decide(0.9, 5, 0.2), A::Shed);
    EXPECT_EQ(p.amount, 4);
    EXPECT_EQ(p.decide(0.7, 0, 0.2), A::None);
    EXPECT_EQ(p.decide(0.7, 0, 0.2), A::None);
    // After a calm window the next overload starts again from one.
    EXPECT_EQ(p.decide(0.95, 3, 0.2), A::Shed);
    EXPECT_EQ(p.amount, 1);
    EXPECT_EQ(p.decide(0.7, 0, 0.2), A::None);
    // Busy without underruns: keep everything.
    for (int k = 0; k < 20; ++k) EXPECT_EQ(p.decide(0.9, 0, 0.2), A::None);
    // Calm, but the thread would pass 60 % of a core with the voice back: keep it shed.
    EXPECT_EQ(p.decide(0.45, 0, 0.2), A::None);
    // Calm for 10 s and room for it: take one back; the next needs another calm spell.
    ShedPolicy q;
    std::vector<A> got;
    for (int k = 0; k < 25; ++k) got.push_back(q.decide(0.3, 0, 0.2));
    const auto restores = std::count(got.begin(), got.end(), A::Restore);
    EXPECT_EQ(restores, 2) << "one per 10 s of calm";
    EXPECT_EQ(got[9], A::Restore);
    EXPECT_EQ(got[19], A::Restore);
    // An underrun resets the calm.
    ShedPolicy r;
    for (int k = 0; k < 9; ++k) r.decide(0.3, 0, 0.2);
    EXPECT_EQ(r.decide(0.3, 1, 0.2), A::None);
    for (int k = 0; k < 9; ++k) EXPECT_EQ(r.decide(0.3, 0, 0.2), A::None);
    EXPECT_EQ(r.decide(0.3, 0, 0.2), A::Restore);
}

TEST(LoadShedding, AnOverloadedStretchThreadShedsTheNewestPlayersInsteadOfStarvingThemAll) {
    // Twelve Rubber Band R3 followers on one stretch thread, played at real-time pace: about three
    // cores' worth of stretching here (a quarter of a core each, bench/), more than one thread can
    // give on any machine. The thread sheds the newest players (varispeed) until the rest keep up.
    EngineConfig cfg = OfflineServer::defaultConfig();
    cfg.blockSize = 256;
    cfg.stretchAhead = true;
    OfflineServer s(cfg);
    s.stretchWorker()->stop();
    s.stretchWorker()->start(1);
    TempDir dir;
    toneAt150(s, dir, 0.05);
    constexpr int kVoices = 12;
    // The newest (the first to be shed) alone on the right, the others on the left.
    for (int k = 0; k < kVoices; ++k)
        s.send("/s_new", "player", 1000 + k, 1, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0f, "stretch", "rb3",
               "pan", k == kVoices - 1 ? 1.0f : -1.0f);
    auto next = std::chrono::steady_clock::now();
    std::vector<uint64_t> underrunsAt; // per second
    const int blocksPerSecond = 48000 / 256;
    for (int b = 0; b < 16 * blocksPerSecond; ++b) {
        s.render(256);
        if (b % blocksPerSecond == 0) underrunsAt.push_back(s.engine().stats().stretchUnderruns);
        next += std::chrono::microseconds(5333);
        std::this_thread::sleep_until(next);
    }
    underrunsAt.push_back(s.engine().stats().stretchUnderruns);
    // The thread decides on its own clock (a window of about a second) and its events reach
    // clients at most every 100 ms: /status and the messages agree once the last event is out.
    std::vector<int> shed;
    int32_t statusShed = -1;
    for (int attempt = 0; attempt < 10 && statusShed != static_cast<int32_t>(shed.size()); ++attempt) {
        s.send("/status");
        statusShed = s.find("/status.reply").back().i(24);
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        s.render(256);
        shed.clear();
        for (const auto& m : s.find("/stretch_shed")) {
            if (m.i(1) == 1) shed.push_back(m.i(0));
            else shed.erase(std::remove(shed.begin(), shed.end(), m.i(0)), shed.end());
        }
    }
    EXPECT_EQ(statusShed, static_cast<int32_t>(shed.size())) << "/status counts the players /stretch_shed reported";
    std::printf("shed %zu of %d players:", shed.size(), kVoices);
    for (int id : shed) std::printf(" %d", id);
    std::printf("\nunderruns per second:");
    for (size_t k = 1; k < underrunsAt.size(); ++k) std::printf(" %llu", static_cast<unsigned long long>(underrunsAt[k] - underrunsAt[k - 1]));
    std::printf("\n");
    ASSERT_FALSE(shed.empty());
#if defined(__SANITIZE_THREAD__)
    // ThreadSanitizer slows this process's own code (the audio thread, the rings) several times
    // over: the stretch thread is then starved rather than overloaded, and rightly sheds no more.
    // What is checked here is the order, and (by TSan) the threads' hand-over of shed voices.
    constexpr bool kTimed = false;
#else
    constexpr bool kTimed = true;
#endif
    // How many stay stretched depends on the share of a core this thread gets: 9 of 12 are
    // shed here alone (4-8 before a late start counted as underruns: the players the thread had
    // not got going yet were silent, not covered, and told the policy nothing), but a CI run on
    // a crowded host shed all 12 (a thread given less than a quarter of a core cannot carry one
    // R3 player, and shedding it is then right). That a
    // thread which keeps up sheds nothing is tested without a clock above (ThePolicyShedsOnly...).
    if (shed.size() == static_cast<size_t>(kVoices)) std::printf("all shed: this thread got less than one R3 player's share of a core\n");
    // The newest first: the shed players are the last ones created.
    std::sort(shed.begin(), shed.end());
    for (size_t k = 0; k < shed.size(); ++k) EXPECT_EQ(shed[k], 1000 + kVoices - static_cast<int>(shed.size() + 0) + static_cast<int>(k));
    // How quickly the underruns settle is printed above, not asserted: it depends on what else
    // this machine runs (a CI run shared with a second build saw 708 underruns in a second long
    // after the shedding had settled, none of them loopd's doing). The policy's settling is
    // tested deterministically above (ThePolicyShedsOnly...).
    if (!kTimed) return;
    // Never a gap: every 10 ms of the newest player (through its underruns, its shedding and
    // after) sounds at its level (a 0.05 sine: rms 0.035); the mix of the others (whose phases
    // may partly cancel) is never silent.
    const auto& mix = s.output[0];
    const auto& newest = s.output[1];
    size_t first = 0; // its first stretched (or, shed before that, varispeed) frames
    while (first + 480 <= newest.size() && rms(newest, first, first + 480) < 0.03) first += 480;
    // (Stretched, or after 0.1 s without a first output at varispeed: a late start.)
    EXPECT_LT(first, 48000u / 5) << "the newest player sounds within 0.2 s";
    double quietest[2] = {1.0, 1.0};
    size_t quietestAt[2] = {0, 0};
    for (size_t at = first; at + 480 <= newest.size(); at += 480) {
        const double r[2] = {rms(newest, at, at + 480), rms(mix, at, at + 480)};
        for (int k = 0; k < 2; ++k)
            if (r[k] < quietest[k]) { quietest[k] = r[k]; quietestAt[k] = at; }
    }
    std::printf("from frame %zu: the newest player's quietest 10 ms rms %.4f (at %zu; its level 0.035), the others' %.4f (at %zu)\n",
                first, quietest[0], quietestAt[0], quietest[1], quietestAt[1]);
    EXPECT_GT(quietest[0], 0.03) << "a gap in the newest player at " << quietestAt[0];
    EXPECT_GT(quietest[1], 0.002) << "the others fell silent at " << quietestAt[1];
}

namespace {
// A 440 Hz tone of 120 BPM material following a 150 BPM clock, 1.5 s in: stretched it stays at
// 440 Hz, at varispeed it reads 1.25 x as fast (550 Hz), so the pitch tells which is playing.
StretchVoice* toneFollower(RealTimeRig& r, const char* method) {
    r.loadTone(2, 0.4);
    r.s.send("/s_new", "player", 5, 0, 0, "buf", 2, "loop", 1, "follow", 1, "bpm", 120.0f, "stretch", method);
    r.run(1.5);
    StretchVoice* v = r.s.stretchWorker()->voiceOf(5);
    EXPECT_NE(v, nullptr) << method;
    if (v) {
        EXPECT_TRUE(v->sheddable) << method;
    }
    return v;
}
// Shed from shedAt to backAt, stretched before and after: 550 Hz then 440 Hz, no step above the
// 550 Hz tone's own by more than 10 %, no 10 ms without sound.
void expectShedAndBack(const std::vector<float>& y, size_t shedAt, size_t backAt, const char* method, const char* what) {
    const double shed = zeroCrossingHz(y, shedAt + 4800, backAt, 48000.0);
    const double after = zeroCrossingHz(y, backAt + 24000, y.size(), 48000.0);
    const float step = maxStep(y, shedAt - 4800, y.size());
    const float own = maxStep(sine(550.0, 0.4, 4800, 48000.0));
    std::printf("%-5s: %s: %.1f Hz shed, %.1f Hz back; largest step %.4f (a 550 Hz tone's own %.4f)\n", method, what, shed, after,
                step, own);
    EXPECT_NEAR(shed, 550.0, 2.0) << method;
    EXPECT_NEAR(after, 440.0, 2.0) << method;
    EXPECT_LT(step, 1.1f * own) << method;
    for (size_t at = shedAt; at + 480 <= y.size(); at += 480)
        ASSERT_GT(rms(y, at, at + 480), 0.2) << method << ": a gap at " << at;
}
} // namespace

TEST(LoadShedding, AShedPlayerPlaysOnAtVarispeedAndComesBackStretchedWithoutAGap) {
    // Shed for two seconds and taken back: no underrun, no silence, no step.
    for (const char* method : kMethods) {
        RealTimeRig r(150.0f);
        StretchVoice* v = toneFollower(r, method);
        ASSERT_NE(v, nullptr);
        const size_t shedAt = r.s.output[0].size();
        v->shedRequest.store(true);
        r.run(2.0);
        EXPECT_TRUE(v->shed.load()) << method << ": the player took the request";
        const size_t backAt = r.s.output[0].size();
        v->shedRequest.store(false);
        r.run(2.0);
        EXPECT_FALSE(v->shed.load()) << method;
        const double before = zeroCrossingHz(r.s.output[0], shedAt - 24000, shedAt, 48000.0);
        std::printf("%-5s: %.1f Hz stretched\n", method, before);
        EXPECT_NEAR(before, 440.0, 2.0) << method;
        expectShedAndBack(r.s.output[0], shedAt, backAt, method, "shed and back");
        EXPECT_EQ(r.s.engine().stats().stretchUnderruns, 0u) << method;
    }
}

TEST(LoadShedding, AShedRequestWhileRejoiningIsTakenAtOnceAndTheVarispeedPlaysOn) {
    // Taken back while the worker produces nothing (it is not stepped): the player rejoins, i.e.
    // plays on at varispeed waiting for the re-primed stretcher. Shed again then, it must take
    // the request in the next block and go on from where the varispeed stands (550 Hz, no gap,
    // no step), and come back stretched (440 Hz) once the worker runs and it is taken back again.
    for (const char* method : kMethods) {
        RealTimeRig r(150.0f);
        StretchVoice* v = toneFollower(r, method);
        ASSERT_NE(v, nullptr);
        const size_t shedAt = r.s.output[0].size();
        v->shedRequest.store(true);
        r.run(1.0);
        ASSERT_TRUE(v->shed.load()) << method;
        v->shedRequest.store(false); // taken back, but the worker is stalled: rejoining
        for (int k = 0; k < 40; ++k) r.s.render(256);
        ASSERT_FALSE(v->shed.load()) << method << ": restored";
        v->shedRequest.store(true);  // shed again before the rejoin could end
        const size_t reshedAt = r.s.output[0].size();
        r.s.render(256);
        EXPECT_TRUE(v->shed.load()) << method << ": the request was taken in the next block";
        r.run(1.0);
        const size_t backAt = r.s.output[0].size();
        v->shedRequest.store(false);
        r.run(2.0);
        EXPECT_FALSE(v->shed.load()) << method;
        expectShedAndBack(r.s.output[0], shedAt, backAt, method, "shed, rejoining, shed again");
        // Where it was shed again the varispeed goes on unchanged (no lock correction jumps in:
        // its grid position is where the varispeed stands).
        const float own = maxStep(sine(550.0, 0.4, 4800, 48000.0));
        EXPECT_LT(maxStep(r.s.output[0], reshedAt - 2400, reshedAt + 9600), 1.03f * own) << method;
    }
}

TEST(LoadShedding, AShedFollowerStaysOnTheBeatsAndSoDoesItWhenItComesBack) {
    // The click track following a 140 BPM clock, shed at 2.0 s and taken back at 4.5 s: every
    // click against the grid begun at its start, before, while shed and after.
    for (const char* method : kMethods) {
        RealTimeRig r(140.0f);
        r.s.send("/s_new", "player", 5, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0f, "stretch", method);
        r.run(2.0);
        StretchVoice* v = r.s.stretchWorker()->voiceOf(5);
        ASSERT_NE(v, nullptr);
        v->shedRequest.store(true);
        r.run(2.5);
        v->shedRequest.store(false);
        r.run(3.0);
        const auto start = static_cast<int64_t>(r.s.find("/n_go").at(0).num(5));
        const auto& y = r.s.output[0];
        double worst[3] = {0.0, 0.0, 0.0};
        int counted[3] = {0, 0, 0};
        for (int k = 1;; ++k) {
            const auto due = start + static_cast<int64_t>(std::llround(24000.0 * k * 120.0 / 140.0));
            if (due + 2400 >= static_cast<int64_t>(y.size())) break;
            const int phase = due < 96000 ? 0 : due < 216000 ? 1 : 2;
            const int64_t onset = onsetNear(y, due);
            ASSERT_GE(onset, 0) << method << ": no click within 20 ms of " << due;
            worst[phase] = std::max(worst[phase], std::fabs(static_cast<double>(onset - due) / 48.0));
            ++counted[phase];
        }
        std::printf("%-5s: clicks off the grid, worst: stretched %.2f ms (%d), shed %.2f ms (%d), back %.2f ms (%d)\n", method,
                    worst[0], counted[0], worst[1], counted[1], worst[2], counted[2]);
        for (int ph = 0; ph < 3; ++ph) {
            EXPECT_GE(counted[ph], 3) << method;
            EXPECT_LT(worst[ph], std::string(method) == "rb3" && ph != 1 ? 2.0 : 8.0) << method << " phase " << ph;
        }
        EXPECT_EQ(r.s.engine().stats().stretchUnderruns, 0u) << method;
    }
}

TEST(LoadShedding, ALateFirstOutputStartsAtVarispeedAndTheStretchJoinsWithoutAGap) {
    // The worker stalls for the first second of a follower (a busy stretch thread): after 0.1 s
    // of waiting the varispeed starts it (a 440 Hz tone of 120 BPM material on a 150 BPM clock:
    // 550 Hz) on its grid, each covered block an underrun; once the worker runs, the stretched
    // output (440 Hz) catches up and takes over. No gap after the wait, no step, the clicks of a
    // click track on the grid throughout.
    constexpr int kStall = 48000 / 256; // blocks: 1 s
    for (const char* method : kMethods) {
        RealTimeRig r(150.0f);
        r.loadTone(2, 0.4);
        r.run(0.2);
        r.s.send("/s_new", "player", 5, 0, 0, "buf", 2, "loop", 1, "follow", 1, "bpm", 120.0f, "stretch", method);
        for (int k = 0; k < kStall; ++k) r.s.render(256);
        const uint64_t stalled = r.s.engine().stats().stretchUnderruns;
        r.run(2.0);
        const auto start = static_cast<size_t>(r.s.find("/n_go").at(0).num(5));
        const auto& y = r.s.output[0];
        const double waiting = rms(y, start, start + 4800 - 256);
        std::printf("%-5s: late start: rms %.4f while waiting, %llu underruns in the stall, %llu after\n", method, waiting,
                    static_cast<unsigned long long>(stalled),
                    static_cast<unsigned long long>(r.s.engine().stats().stretchUnderruns - stalled));
        EXPECT_LT(waiting, 1e-4) << method << ": the pre-roll's wait is silent";
        // Varispeed from 0.1 s (to the block), stretched once the worker has run.
        expectShedAndBack(y, start + 4800 + 256, start + 48000, method, "late start");
        EXPECT_GE(stalled, static_cast<uint64_t>(kStall - 20)) << method << ": each covered block is an underrun";
        EXPECT_LE(r.s.engine().stats().stretchUnderruns - stalled, 24u) << method << ": the stretch joins within 0.13 s";
        std::this_thread::sleep_for(std::chrono::milliseconds(110)); // /notify news: at most every 100 ms
        r.s.render(256);
        EXPECT_FALSE(r.s.find("/stretch_underrun").empty()) << method << ": reported to /notify clients";
    }
    for (const char* method : kMethods) {
        RealTimeRig r(140.0f);
        r.s.send("/s_new", "player", 5, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0f, "stretch", method);
        for (int k = 0; k < kStall; ++k) r.s.render(256);
        r.run(3.0);
        const auto start = static_cast<int64_t>(r.s.find("/n_go").at(0).num(5));
        const auto& y = r.s.output[0];
        double worst[2] = {0.0, 0.0};
        int counted[2] = {0, 0};
        for (int k = 1;; ++k) {
            const auto due = start + static_cast<int64_t>(std::llround(24000.0 * k * 120.0 / 140.0));
            if (due + 2400 >= static_cast<int64_t>(y.size())) break;
            const int phase = due < start + 48000 ? 0 : 1;
            const int64_t onset = onsetNear(y, due);
            ASSERT_GE(onset, 0) << method << ": no click within 20 ms of " << due;
            worst[phase] = std::max(worst[phase], std::fabs(static_cast<double>(onset - due) / 48.0));
            ++counted[phase];
        }
        std::printf("%-5s: late start: clicks off the grid, worst: varispeed %.2f ms (%d), stretched %.2f ms (%d)\n", method,
                    worst[0], counted[0], worst[1], counted[1]);
        EXPECT_GE(counted[0], 1) << method;
        EXPECT_LT(worst[0], 2.0) << method;
        EXPECT_LT(worst[1], std::string(method) == "rb3" ? 2.0 : 8.0) << method;
    }
}

namespace {
// A 140 BPM follower of the 120 BPM click track that gets `interruption` at 1.3 s; returns the
// worst deviation (ms) of the click spacing from the clock's beat, counting gaps that start after
// `from` seconds.
double clickSpacingAfter(const char* method, const std::vector<char>& interruption, double from, size_t& clicksFound) {
    OfflineServer s;
    TempDir dir;
    const auto clicks = clickTrack(16);
    writeWav(dir.file("clicks.wav"), {clicks, clicks}, 48000);
    s.send("/b_allocRead", 1, dir.file("clicks.wav").c_str());
    s.send("/set_tempo", 140.0f);
    s.send("/s_new", "player", 5, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0f, "stretch", method);
    s.packet(bundleAt(1.3, {interruption}));
    s.renderSeconds(5.0);
    const auto& y = s.output[0];
    std::vector<int64_t> on;
    for (int64_t i = 0, last = -4800; i < static_cast<int64_t>(y.size()); ++i)
        if (std::fabs(y[static_cast<size_t>(i)]) > 0.2f) { if (i - last >= 4800) on.push_back(i); last = i; }
    const double period = 48000.0 * 60.0 / 140.0;
    double worst = 0.0;
    for (size_t k = 1; k < on.size(); ++k)
        if (static_cast<double>(on[k - 1]) >= from * 48000.0)
            worst = std::max(worst, std::fabs(static_cast<double>(on[k] - on[k - 1]) - period) / 48.0);
    clicksFound = on.size();
    return worst;
}
} // namespace

TEST(BeatGrid, AClockResetMovesTheGridWithoutAChase) {
    // /reset puts the beat position back to 0 mid-play: followers keep their tempo and take the
    // grid from there (they are not sped up or slowed down to "catch" a jump of the beat count).
    for (const char* method : {"rate", "rb2", "rb3", "wsola"}) {
        size_t found = 0;
        const double worst = clickSpacingAfter(method, msg("/reset"), 0.0, found);
        std::printf("%-5s: clicks %zu, worst spacing error %.2f ms across a /reset\n", method, found, worst);
        EXPECT_GE(found, 10u) << method;
        EXPECT_LT(worst, std::string(method) == "wsola" ? 8.0 : 2.0) << method;
    }
}

TEST(BeatGrid, ASeekMovesTheMaterialNotTheTempo) {
    // Setting `start` on a playing follower jumps in the material: from there it keeps the clock's
    // tempo (it does not speed up or slow down to put the old phase back). Gaps from 0.3 s after
    // the seek count (the jump itself makes one odd gap).
    for (const char* method : {"rate", "rb2", "rb3", "wsola"}) {
        size_t found = 0;
        const double worst = clickSpacingAfter(method, msg("/n_set", 5, "start", 60000.0f), 1.6, found); // 2.5 beats on
        std::printf("%-5s: clicks %zu, worst spacing error %.2f ms after a seek\n", method, found, worst);
        EXPECT_GE(found, 9u) << method;
        EXPECT_LT(worst, std::string(method) == "wsola" ? 8.0 : 2.0) << method;
    }
}
