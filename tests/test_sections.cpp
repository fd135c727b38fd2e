// The section exporter's rules (server/library/Sections.h) and the offline stretch beneath it
// (stretch/OfflineStretch.h): keys in their spellings, Rekordbox locations and matching, the
// original's cue rules, beat snapping, its CSV number format; lengths, pitch and timing of the
// whole-clip stretch. The end-to-end run with real files is tests/e2e/test_sections.py.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numbers>

#include "server/library/Sections.h"
#include "stretch/OfflineStretch.h"

using namespace loopd;
using namespace loopd::sections;

TEST(SectionKeys, EverySpellingOfAKeyIsTheSameKey) {
    const auto gm = keyCode("Gm");
    ASSERT_TRUE(gm);
    for (const char* s : {"G minor", "gmin", "G-", " g m ", "6A", "6a", "11m"}) EXPECT_EQ(keyCode(s), gm) << s;
    EXPECT_EQ(keyCode("Bb"), keyCode("A#"));
    EXPECT_EQ(keyCode("Bb major"), keyCode("6B"));
    EXPECT_EQ(keyCode("F#m"), keyCode("Gbm"));
    EXPECT_EQ(keyCode("F#m"), keyCode("11A"));
    EXPECT_EQ(keyCode("Abm"), keyCode("1A"));
    EXPECT_EQ(keyCode("C"), keyCode("8B"));
    EXPECT_EQ(keyCode("C"), keyCode("1d"));
    EXPECT_EQ(keyCode("Am"), keyCode("8A"));
    EXPECT_EQ(keyCode("Am"), keyCode("1m"));
    EXPECT_EQ(keyCode("E"), keyCode("12B"));
    EXPECT_NE(keyCode("Gm"), keyCode("G"));
    for (const char* s : {"", "H", "13A", "0B", "Xm", "G dorian", "6C"}) EXPECT_FALSE(keyCode(s)) << s;
    EXPECT_TRUE(keyMatches("6A", {"Cm", "G minor"}));
    EXPECT_FALSE(keyMatches("6A", {"Cm", "G"}));
    EXPECT_TRUE(keyMatches("Weird Key", {"weird key"})); // the original's rule for what is no key
}

TEST(SectionRekordbox, LocationsDecodeAndTracksMatchByPathThenFileNameThenName) {
    EXPECT_EQ(locationToPath("file://localhost/Users/dj/My%20Track%E2%99%AF.wav"), "/Users/dj/My Track\xe2\x99\xaf.wav");
    EXPECT_EQ(locationToPath("file:///music/a.wav"), "/music/a.wav");
    EXPECT_EQ(locationToPath("file://localhost/x/100%zz.wav"), "/x/100%zz.wav");
    std::vector<Track> tracks(3);
    tracks[0].path = "/Music/DJ/One.wav";
    tracks[0].bpm = 100.0;
    tracks[1].path = "/elsewhere/two.wav";
    tracks[1].bpm = 110.0;
    tracks[2].path = "/music/three (extended).wav";
    tracks[2].bpm = 120.0;
    std::vector<RekordboxTrack> xml(4);
    xml[0].location = "/music/dj/one.wav"; // full path, other case
    xml[0].averageBpm = 101.0;
    xml[0].tonality = "Am";
    xml[1].location = "/Volumes/USB/TWO.wav"; // file name only
    xml[1].averageBpm = 111.0;
    xml[2].name = "three";                     // name contained in the path: the key only
    xml[2].location = "/nowhere/x.wav";
    xml[2].averageBpm = 90.0;
    xml[2].tonality = "6A";
    xml[3].name = "Unmatched";
    xml[3].location = "/q/unmatched.wav";
    const RekordboxReport r = applyRekordbox(tracks, xml);
    EXPECT_EQ(tracks[0].bpm, 101.0);
    EXPECT_EQ(tracks[0].key, "Am");
    EXPECT_EQ(tracks[1].bpm, 111.0);
    EXPECT_EQ(tracks[2].bpm, 120.0);
    EXPECT_EQ(tracks[2].key, "6A");
    EXPECT_EQ(r.bpmOverrides, 2);
    EXPECT_EQ(r.keysSet, 2);
    ASSERT_EQ(r.unmatched.size(), 1u);
    EXPECT_EQ(r.unmatched[0], "Unmatched");
}

TEST(SectionRekordbox, ReadsTheCollectionWithItsTempoMarkers) {
    const std::string file = testing::TempDir() + "/rb.xml";
    std::ofstream(file) << R"(<?xml version="1.0" encoding="UTF-8"?><DJ_PLAYLISTS Version="1.0.0"><COLLECTION Entries="1">
<TRACK TrackID="7" Name="A &amp; B" AverageBpm="124.50" TotalTime="301" Tonality="Gm" Location="file://localhost/m/A%20%26%20B.wav">
<TEMPO Inizio="0.025" Bpm="124.50" Metro="4/4" Battito="1"/><TEMPO Inizio="60.2" Bpm="125.00" Metro="4/4" Battito="3"/></TRACK>
</COLLECTION></DJ_PLAYLISTS>)";
    const auto t = readRekordbox(file);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].trackId, 7);
    EXPECT_EQ(t[0].name, "A & B");
    EXPECT_EQ(t[0].location, "/m/A & B.wav");
    EXPECT_EQ(t[0].averageBpm, 124.5);
    ASSERT_EQ(t[0].tempos.size(), 2u);
    EXPECT_EQ(t[0].tempos[1].battito, 3);
    EXPECT_DOUBLE_EQ(t[0].tempos[1].inizio, 60.2);
    std::ofstream(file) << "<DJ_PLAYLISTS><COLLECTION><TRACK";
    EXPECT_THROW(readRekordbox(file), std::runtime_error);
}

namespace {
Track segmented(std::vector<Segment> segs) {
    Track t;
    t.path = "/a.wav";
    t.bpm = 120.0;
    t.segments = std::move(segs);
    for (int k = 0; k < 200; ++k) t.beats.push_back(k * 0.5);
    return t;
}
} // namespace

TEST(SectionCues, TheOriginalsRules) {
    // Two intros: the last one counts. The first segment starting at/after its end is section 1.
    const Track t = segmented({{0, 8, "intro"}, {8, 16, "Intro"}, {16, 24, "verse"}, {24, 40, "chorus"}, {40, 48, "outro"}});
    std::string why;
    auto c = findCues(t, 1, why);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->ini, 16);
    EXPECT_EQ(c->begin, 16);
    EXPECT_EQ(c->end, 24);
    c = findCues(t, 3, why);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->begin, 40);
    EXPECT_EQ(c->end, 48);
    EXPECT_FALSE(findCues(t, 4, why));
    EXPECT_NE(why.find("section 4"), std::string::npos) << why;
    EXPECT_FALSE(findCues(segmented({{0, 8, "verse"}}), 1, why));
    EXPECT_EQ(why, "no intro segment");
    EXPECT_FALSE(findCues(segmented({{0, 8, "verse"}, {4, 9, "intro"}}), 1, why));
    EXPECT_EQ(why, "no segment after the intro");
}

TEST(SectionCues, CutsMoveToTheNearestBeatWithinHalfABeat) {
    Track t = segmented({});
    const Cues c = snapToBeats(t, {4.007, 8.24, 12.26});
    EXPECT_EQ(c.ini, 4.0);
    EXPECT_EQ(c.begin, 8.0);
    EXPECT_EQ(c.end, 12.5);
    t.beats = {0.0, 0.5, 1.0}; // the beat list ends early: cues beyond it stay
    const Cues far = snapToBeats(t, {0.49, 5.0, 9.0});
    EXPECT_EQ(far.ini, 0.5);
    EXPECT_EQ(far.begin, 5.0);
    EXPECT_EQ(far.end, 9.0);
}

TEST(SectionCues, SelectionByTempoAndKey) {
    Track t = segmented({});
    t.key = "6A";
    Filter f;
    f.bpm = 122.0;
    EXPECT_TRUE(passes(t, f)); // 120 within 122 ± 2 (inclusive)
    f.delta = 1.99;
    EXPECT_FALSE(passes(t, f));
    f.bpmMin = 119.0; // min/max win over bpm ± delta
    EXPECT_TRUE(passes(t, f));
    f.keys = {"Cm", "gm"};
    EXPECT_TRUE(passes(t, f));
    f.keys = {"G"};
    EXPECT_FALSE(passes(t, f));
}

TEST(SectionFormat, PythonFloatsAndMinutes) {
    EXPECT_EQ(pyFloat(120.0), "120.0");
    EXPECT_EQ(pyFloat(122.0 / 120.0), "1.0166666666666666");
    EXPECT_EQ(pyFloat(0.1), "0.1");
    EXPECT_EQ(pyFloat(4.007), "4.007");
    EXPECT_EQ(minutesSeconds(75.5), "1:15.50");
    EXPECT_EQ(minutesSeconds(7.25), "0:07.25");
}

TEST(SectionTracks, BadJsonIsReportedNotThrown) {
    const std::string dir = testing::TempDir() + "/sect";
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/bad.json") << "{\"path\": \"/a.wav\", \"bpm\": ";
    std::ofstream(dir + "/nosegs.json") << R"({"path": "/a.wav", "bpm": 120, "beats": [0, 0.5]})";
    std::ofstream(dir + "/strbpm.json") << R"({"path": "/a.wav", "bpm": "124.5", "beats": [0], "segments": [{"start": 0, "end": 1, "label": "intro"}]})";
    std::ofstream(dir + "/zero.json") << R"({"path": "/a.wav", "bpm": 0, "beats": [0], "segments": [{"start": 0, "end": 1, "label": "intro"}]})";
    const auto tracks = readStructDir(dir);
    ASSERT_EQ(tracks.size(), 4u);
    EXPECT_NE(checkTrack(tracks[0]).find("not valid JSON"), std::string::npos) << checkTrack(tracks[0]);
    EXPECT_EQ(checkTrack(tracks[1]), "no segments");
    EXPECT_EQ(checkTrack(tracks[2]), "");
    EXPECT_EQ(tracks[2].bpm, 124.5);
    EXPECT_NE(checkTrack(tracks[3]).find("not a tempo"), std::string::npos);
    EXPECT_THROW(readStructDir(dir + "/none"), std::runtime_error);
}

namespace {
// Rising zero crossings per second over [a, b).
double frequency(const std::vector<float>& x, size_t a, size_t b, double rate) {
    double first = -1, last = -1;
    int n = 0;
    for (size_t i = a + 1; i < b; ++i)
        if (x[i - 1] < 0.0f && x[i] >= 0.0f) {
            const double t = static_cast<double>(i - 1) + x[i - 1] / (x[i - 1] - x[i]);
            if (first < 0) first = t;
            else ++n;
            last = t;
        }
    return n * rate / (last - first);
}
} // namespace

TEST(OfflineStretch, ExactLengthPitchKeptAndFrameZeroOnFrameZero) {
    const double rate = 48000.0;
    const int64_t frames = 96000;
    std::vector<float> tone(static_cast<size_t>(frames)), click(static_cast<size_t>(frames), 0.0f);
    for (int64_t i = 0; i < frames; ++i) tone[static_cast<size_t>(i)] = 0.5f * static_cast<float>(std::sin(2.0 * std::numbers::pi * 440.0 * static_cast<double>(i) / rate));
    for (int k = 0; k < 4; ++k) // clicks at 0.25 s, 0.75 s, 1.25 s, 1.75 s
        for (int i = 0; i < 48; ++i) click[static_cast<size_t>(12000 + k * 24000 + i)] = (i % 2 ? -0.8f : 0.8f) * (1.0f - static_cast<float>(i) / 48.0f);
    for (auto method : {stretch::Method::Rb3, stretch::Method::Rb2, stretch::Method::Wsola}) {
        for (double ratio : {120.0 / 122.0, 1.25, 0.6}) {
            const auto out = stretch::stretchWhole(method, {tone.data(), click.data()}, frames, rate, ratio);
            ASSERT_EQ(out.size(), 2u);
            const auto n = static_cast<size_t>(std::llround(static_cast<double>(frames) * ratio));
            EXPECT_EQ(out[0].size(), n);
            EXPECT_EQ(out[1].size(), n);
            EXPECT_NEAR(frequency(out[0], n / 4, 3 * n / 4, rate), 440.0, 1.0) << stretch::methodName(method) << " " << ratio;
            // The clicks' peaks where the ratio puts them: R3 within 3 ms at every ratio; R2
            // (window smear) and WSOLA within 8 ms at a DJ's ratios. At 0.6 (1.67x faster)
            // WSOLA drops 40 % of the material and a 1 ms click can go with it (measured: the
            // second click vanished), so only length and pitch are asked of it there.
            const bool r3 = method == stretch::Method::Rb3;
            if (!r3 && ratio < 0.9) continue;
            for (int k = 0; k < 4; ++k) {
                const double want = (12000.0 + k * 24000.0) * ratio;
                size_t best = 0;
                float peak = 0.0f;
                for (size_t i = static_cast<size_t>(want - 2400); i < static_cast<size_t>(want + 2400) && i < n; ++i)
                    if (std::fabs(out[1][i]) > peak) peak = std::fabs(out[1][i]), best = i;
                EXPECT_NEAR(static_cast<double>(best), want, (r3 ? 0.003 : 0.008) * rate) << stretch::methodName(method) << " " << ratio << " click " << k;
            }
        }
    }
    EXPECT_THROW(stretch::stretchWhole(stretch::Method::Rb3, {tone.data()}, frames, rate, 20.0), std::invalid_argument);
}

TEST(OfflineStretch, TheExtremeRatiosGiveExactFiniteOutput) {
    // 1/16 and 16 are the limits stretchWhole accepts. (Rubber Band's real-time R3 read past its
    // buffers at 1/47: the sanitizer build runs this to show the offline limits are inside.)
    const double rate = 48000.0;
    const int64_t frames = 24000;
    std::vector<float> tone(static_cast<size_t>(frames));
    for (int64_t i = 0; i < frames; ++i) tone[static_cast<size_t>(i)] = 0.5f * static_cast<float>(std::sin(2.0 * std::numbers::pi * 440.0 * static_cast<double>(i) / rate));
    for (auto method : {stretch::Method::Rb3, stretch::Method::Rb2, stretch::Method::Wsola})
        for (double ratio : {1.0 / 16.0, 16.0}) {
            const auto out = stretch::stretchWhole(method, {tone.data()}, frames, rate, ratio);
            ASSERT_EQ(out.size(), 1u);
            ASSERT_EQ(out[0].size(), static_cast<size_t>(std::llround(static_cast<double>(frames) * ratio)));
            double energy = 0.0;
            for (float x : out[0]) {
                ASSERT_TRUE(std::isfinite(x)) << stretch::methodName(method) << " " << ratio;
                energy += static_cast<double>(x) * x;
            }
            EXPECT_GT(energy / static_cast<double>(out[0].size()), 0.01) << stretch::methodName(method) << " " << ratio; // a tone, not silence
        }
}
