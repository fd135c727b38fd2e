// Offline renders: the looper and SooperLooper's OSC namespace, measured on the loops
// it records (saved with /sl/#/save_loop and compared sample for sample with the input) and on
// the sound it plays.
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "server/engine/BufferData.h"
#include "server/nodes/looper/LoopMemory.h"
#include "server/nodes/looper/Looper.h"
#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {
constexpr int kRate = 48000;
constexpr int kFade = 256; // fade_samples default
constexpr const char* kUrl = "osc.udp://127.0.0.1:9/";

int64_t S(double seconds) { return static_cast<int64_t>(std::llround(seconds * kRate)); }

std::vector<float> noise(size_t n, uint32_t seed, float amp = 0.4f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-amp, amp);
    std::vector<float> x(n);
    for (auto& v : x) v = u(rng);
    return x;
}

struct Rig {
    explicit Rig(int loops = 1, int roundTrip = 0, int block = 64, int outputs = 2, int cue = -1)
        : s(config(roundTrip, block, outputs, cue), {}, options()) {
        for (int i = 0; i < loops; ++i) s.send("/loop_add", 2, 0.0f);
    }
    static EngineConfig config(int roundTrip, int block, int outputs, int cue) {
        EngineConfig c = cfgWithBlock(block);
        c.roundTripLatency = roundTrip;
        c.captureSeconds = 20.0;
        c.numOutputs = outputs;
        c.cueOutput = cue;
        return c;
    }
    static ControllerOptions options() {
        ControllerOptions o;
        o.loopSeconds = 12.0;
        o.undoSeconds = 12.0;
        return o;
    }
    static std::string addr(int loop, const char* verb) { return "/sl/" + std::to_string(loop) + "/" + verb; }
    void hitAt(double t, int loop, const char* cmd) { s.at(t, addr(loop, "hit").c_str(), cmd); }
    void hit(int loop, const char* cmd) { s.send(addr(loop, "hit").c_str(), cmd); }
    void set(int loop, const char* ctrl, float v) { s.send(addr(loop, "set").c_str(), ctrl, v); }
    // Render up to absolute time t (seconds).
    void until(double t) {
        const int64_t target = S(t);
        const int64_t now = static_cast<int64_t>(s.output[0].size());
        if (target > now) s.render(target - now);
    }
    float get(int loop, const char* ctrl) {
        s.send(addr(loop, "get").c_str(), ctrl, kUrl, "/val");
        const auto r = s.find("/val");
        EXPECT_FALSE(r.empty()) << ctrl;
        return r.empty() ? -999.0f : static_cast<float>(r.back().num(2));
    }
    // The loop's content, through /sl/#/save_loop (float WAV) and back.
    std::vector<std::vector<float>> content(int loop) {
        const std::string path = dir.file("loop" + std::to_string(loop) + "_" + std::to_string(saves++) + ".wav");
        s.send(addr(loop, "save_loop").c_str(), path.c_str(), "float", "little", kUrl, "/err");
        for (int i = 0; i < 64 && !std::filesystem::exists(path); ++i) s.render(s.config().blockSize);
        s.render(s.config().blockSize * 2);
        if (!std::filesystem::exists(path)) { ADD_FAILURE() << "save_loop wrote nothing"; return {{}, {}}; }
        return readWav(path);
    }
    void input(std::vector<float> l, std::vector<float> r) { s.input = {std::move(l), std::move(r)}; }

    OfflineServer s;
    TempDir dir;
    int saves = 0;
};

// What a recording of input[start, start+len) holds after its end was crossfaded with the
// input just before its start.
float expectedRecorded(const std::vector<float>& in, int64_t start, int64_t len, int64_t k) {
    const int64_t n = std::min<int64_t>(kFade, len / 2);
    const float v = in[static_cast<size_t>(start + k)];
    if (k < len - n) return v;
    const int64_t j = k - (len - n);
    const float w = static_cast<float>(j + 1) / static_cast<float>(n + 1);
    return v * (1.0f - w) + in[static_cast<size_t>(start - n + j)] * w;
}

void expectRecording(const std::vector<float>& got, const std::vector<float>& in, int64_t start, int64_t len, const char* what) {
    ASSERT_EQ(static_cast<int64_t>(got.size()), len) << what;
    int64_t bad = 0, first = -1;
    for (int64_t k = 0; k < len; ++k)
        if (std::fabs(got[static_cast<size_t>(k)] - expectedRecorded(in, start, len, k)) > 1e-6f) {
            if (first < 0) first = k;
            ++bad;
        }
    EXPECT_EQ(bad, 0) << what << ": first mismatch at frame " << first;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// LoopMemory

TEST(LoopMemory, UndoAndRedoRestoreEveryGenerationExactly) {
    LoopMemory m(2, 20000, 40);
    m.beginGeneration(true);
    for (int64_t f = 0; f < 10000; ++f) { float* p = m.writable(f); p[0] = static_cast<float>(f); p[1] = -static_cast<float>(f); }
    m.setLength(10000);
    m.beginGeneration(false);
    for (int64_t f = 5000; f < 6000; ++f) m.writable(f)[0] += 0.5f;
    EXPECT_EQ(m.frame(5500)[0], 5500.5f);
    ASSERT_TRUE(m.undo());
    EXPECT_EQ(m.frame(5500)[0], 5500.0f);
    EXPECT_EQ(m.length(), 10000);
    ASSERT_TRUE(m.redo());
    EXPECT_EQ(m.frame(5500)[0], 5500.5f);
    EXPECT_EQ(m.undoAll(), 2);
    EXPECT_EQ(m.length(), 0);
    EXPECT_EQ(m.frame(100), nullptr);
    EXPECT_EQ(m.redoAll(), 2);
    EXPECT_EQ(m.frame(100)[1], -100.0f);
    EXPECT_EQ(m.frame(5999)[0], 5999.5f);
    // A new edit after an undo forgets what could have been redone.
    m.undo();
    m.beginGeneration(false);
    m.writable(0)[0] = 7.0f;
    EXPECT_FALSE(m.redo());
    EXPECT_EQ(m.frame(5500)[0], 5500.0f);
}

TEST(LoopMemory, ForgetsTheOldestHistoryWhenThePoolRunsDry) {
    // 3 slots of content, 8 pages in all: the undo history holds only a few page copies.
    LoopMemory m(1, 3 * LoopMemory::kPageFrames, 8);
    m.beginGeneration(true);
    for (int64_t f = 0; f < 3 * LoopMemory::kPageFrames; ++f) *m.writable(f) = 1.0f;
    for (int g = 0; g < 6; ++g) {
        m.beginGeneration(false);
        for (int64_t f = 0; f < 3 * LoopMemory::kPageFrames; ++f) {
            float* p = m.writable(f);
            ASSERT_NE(p, nullptr) << "generation " << g;
            *p += 1.0f;
        }
    }
    EXPECT_EQ(m.frame(0)[0], 7.0f);
    EXPECT_LT(m.undoDepth(), 7);
    EXPECT_GE(m.undoDepth(), 1);
    const int depth = m.undoDepth();
    EXPECT_EQ(m.undoAll(), depth);
    EXPECT_EQ(m.frame(0) ? m.frame(0)[0] : 0.0f, 7.0f - static_cast<float>(depth)); // each undo removes exactly one layer
}

// ---------------------------------------------------------------------------------------------
// Recording, lengths, quantization

TEST(Looper, RecordingBetweenTwoTimetagsHasExactlyThatLength) {
    for (int block : {64, 1000}) {
        Rig r(1, 0, block);
        const auto a = noise(S(6), 1), b = noise(S(6), 2);
        r.input(a, b);
        r.hitAt(0.5, 0, "record");
        r.until(1.0);
        EXPECT_EQ(r.get(0, "state"), 2.0f); // Recording
        r.hitAt(2.0, 0, "record");
        r.until(3.0);
        EXPECT_EQ(r.get(0, "state"), 4.0f); // Playing
        EXPECT_FLOAT_EQ(r.get(0, "loop_len"), 1.5f);
        EXPECT_FLOAT_EQ(r.get(0, "cycle_len"), 1.5f);
        const auto loop = r.content(0);
        expectRecording(loop[0], a, S(0.5), S(1.5), "left");
        expectRecording(loop[1], b, S(0.5), S(1.5), "right");
        // It plays from frame 0 at 2.0 s (faded in over fade_samples), seamlessly round the end.
        r.until(4.0);
        const auto& out = r.s.output[0];
        int64_t bad = 0;
        for (int64_t k = kFade; k < S(1.5) + 4000; ++k)
            if (std::fabs(out[static_cast<size_t>(S(2.0) + k)] - loop[0][static_cast<size_t>(k % S(1.5))]) > 1e-6f) ++bad;
        EXPECT_EQ(bad, 0) << "block " << block;
        EXPECT_TRUE(r.s.find("/fail").empty());
    }
}

TEST(Looper, LaterRecordingsAreQuantizedToTheAnchorAndExtendedToPowersOfTwo) {
    Rig r(3);
    const auto a = noise(S(12), 3), b = noise(S(12), 4);
    r.input(a, b);
    r.hitAt(0.5, 0, "record");
    r.hitAt(1.5, 0, "record");      // anchor: 1 s cycles starting at 0.5, 1.5, 2.5, ...
    r.hitAt(2.3, 1, "record");      // waits for 2.5
    r.until(2.4);
    EXPECT_EQ(r.get(1, "state"), 1.0f); // WaitStart
    r.hitAt(5.4, 1, "record");      // 2.9 s recorded: extended to 4 cycles, ends at 6.5
    r.until(5.5);
    EXPECT_EQ(r.get(1, "state"), 3.0f); // WaitStop
    r.until(6.6);
    EXPECT_EQ(r.get(1, "state"), 4.0f);
    EXPECT_FLOAT_EQ(r.get(1, "loop_len"), 4.0f);
    EXPECT_FLOAT_EQ(r.get(1, "cycle_len"), 1.0f);
    expectRecording(r.content(1)[0], a, S(2.5), S(4.0), "loop 1");

    // Lenience: a press 50 ms after a boundary starts the recording at that boundary; a stop
    // 20 ms past the first cycle keeps one cycle.
    r.hitAt(7.55, 2, "record");
    r.hitAt(8.52, 2, "record");
    r.until(9.0);
    EXPECT_FLOAT_EQ(r.get(2, "loop_len"), 1.0f);
    expectRecording(r.content(2)[1], b, S(7.5), S(1.0), "loop 2 (snapped back)");
    EXPECT_TRUE(r.s.find("/fail").empty());
}

TEST(Looper, RecordingsFollowTheTempoClocksBarsWhenSyncedToIt) {
    Rig r(1);
    const auto a = noise(S(12), 5);
    r.input(a, a);
    r.s.send("/set", "sync_source", -3.0f); // internal: the tempo clock (120 BPM, 4/4: 2 s bars)
    r.hitAt(0.7, 0, "record");               // starts at 2.0
    r.hitAt(5.1, 0, "record");               // 3.1 s recorded: 2 bars, ends at 6.0
    r.until(6.5);
    EXPECT_FLOAT_EQ(r.get(0, "loop_len"), 4.0f);
    expectRecording(r.content(0)[0], a, S(2.0), S(4.0), "bars");
}

TEST(Looper, CaptureTurnsTheLastCycleIntoALoopSampleForSample) {
    Rig r(2);
    const auto a = noise(S(8), 6), b = noise(S(8), 7);
    r.input(a, b);
    r.hitAt(0.5, 0, "record");
    r.hitAt(1.5, 0, "record");      // anchor 1 s
    r.hitAt(1.6, 0, "mute_on");
    r.hitAt(3.7, 1, "capture");     // the last whole cycle: [2.5, 3.5)
    r.until(4.6);
    EXPECT_EQ(r.get(1, "state"), 4.0f);
    EXPECT_FLOAT_EQ(r.get(1, "loop_len"), 1.0f);
    const auto loop = r.content(1);
    expectRecording(loop[0], a, S(2.5), S(1.0), "left");
    expectRecording(loop[1], b, S(2.5), S(1.0), "right");
    // And it plays in phase with the anchor from the moment of the capture.
    int64_t bad = 0;
    for (int64_t t = S(3.7) + kFade; t < S(4.5); ++t)
        if (std::fabs(r.s.output[0][static_cast<size_t>(t)] - loop[0][static_cast<size_t>((t - S(2.5)) % S(1.0))]) > 1e-6f) ++bad;
    EXPECT_EQ(bad, 0);
}

TEST(Looper, FirstCaptureTakesTheLastBarsOrSeconds) {
    Rig r(2);
    const auto a = noise(S(12), 8);
    r.input(a, a);
    r.hitAt(9.3, 0, "capture");          // no anchor: the tempo clock's last 2 s bar, [6, 8)
    r.until(9.4);
    EXPECT_FLOAT_EQ(r.get(0, "loop_len"), 2.0f);
    expectRecording(r.content(0)[0], a, S(6.0), S(2.0), "one bar");
    r.s.at(9.5, "/sl/1/hit", "capture_seconds", 1.25f);
    r.until(9.6);
    EXPECT_FLOAT_EQ(r.get(1, "loop_len"), 1.25f);
    expectRecording(r.content(1)[0], a, S(9.5 - 1.25), S(1.25), "seconds");
}

// ---------------------------------------------------------------------------------------------
// Edits

TEST(Looper, OverdubSumsUndoRestoresExactlyRedoReapplies) {
    Rig r(1);
    const int64_t L = S(1.0);
    auto in = noise(S(8), 9, 0.25f);
    const auto tone = sine(330.0, 0.25, static_cast<size_t>(S(8)), kRate);
    for (int64_t t = S(1.5); t < S(8); ++t) in[static_cast<size_t>(t)] = tone[static_cast<size_t>(t)]; // play a tone after recording
    r.input(in, in);
    r.hitAt(0.5, 0, "record");
    r.hitAt(1.5, 0, "record");
    r.until(2.0);
    const auto base = r.content(0)[0];
    r.hitAt(2.5, 0, "overdub");        // exactly one cycle: frame 0 at 2.5
    r.until(2.6);
    EXPECT_EQ(r.get(0, "state"), 5.0f);
    r.hitAt(3.5, 0, "overdub");
    r.until(4.0);
    const auto dubbed = r.content(0)[0];
    ASSERT_EQ(static_cast<int64_t>(dubbed.size()), L);
    int64_t bad = 0;
    for (int64_t k = kFade; k < L; ++k)
        if (std::fabs(dubbed[static_cast<size_t>(k)] - (base[static_cast<size_t>(k)] + in[static_cast<size_t>(S(2.5) + k)])) > 1e-6f) ++bad;
    EXPECT_EQ(bad, 0) << "overdub = old + input";

    r.hitAt(4.1, 0, "undo");
    r.until(4.2);
    EXPECT_EQ(r.content(0)[0], base) << "undo restores the loop bit for bit";
    r.hitAt(4.3, 0, "redo");
    r.until(4.4);
    EXPECT_EQ(r.content(0)[0], dubbed) << "redo re-applies the overdub bit for bit";
    r.hitAt(4.5, 0, "undo_all");
    r.until(4.6);
    EXPECT_EQ(r.get(0, "state"), 0.0f);
    EXPECT_EQ(r.get(0, "loop_len"), 0.0f);
    r.hitAt(4.7, 0, "redo_all");
    r.until(4.8);
    EXPECT_EQ(r.content(0)[0], dubbed);
}

TEST(Looper, ReversePlaysBackwards) {
    Rig r(1);
    const auto a = noise(S(6), 10);
    r.input(a, a);
    r.hitAt(0.5, 0, "record");
    r.hitAt(1.5, 0, "record");
    r.until(2.0);
    const auto loop = r.content(0)[0];
    const int64_t L = S(1.0);
    r.hitAt(2.5, 0, "reverse");        // at frame 0 of a pass
    r.until(3.6);
    EXPECT_LT(r.get(0, "rate_output"), 0.0f);
    int64_t bad = 0;
    for (int64_t k = kFade + 1; k < L; ++k)
        if (std::fabs(r.s.output[0][static_cast<size_t>(S(2.5) + k)] - loop[static_cast<size_t>((L - k) % L)]) > 1e-6f) ++bad;
    EXPECT_EQ(bad, 0);
}

TEST(Looper, MultiplyGrowsByWholeCyclesAndInsertShiftsTheRest) {
    {
        Rig r(1);
        auto in = noise(S(8), 11, 0.2f);
        r.input(in, in);
        r.hitAt(0.5, 0, "record");
        r.hitAt(1.5, 0, "record");
        r.until(2.0);
        const auto base = r.content(0)[0];
        r.hitAt(2.5, 0, "multiply");
        r.hitAt(4.1, 0, "multiply");    // 1.6 cycles: rounds up to 2
        r.until(4.2);
        EXPECT_EQ(r.get(0, "state"), 6.0f);
        r.until(4.7);
        EXPECT_FLOAT_EQ(r.get(0, "loop_len"), 2.0f);
        EXPECT_FLOAT_EQ(r.get(0, "cycle_len"), 1.0f);
        const auto grown = r.content(0)[0];
        ASSERT_EQ(grown.size(), static_cast<size_t>(S(2.0)));
        int64_t bad = 0;
        for (int64_t k = kFade; k < S(2.0); ++k)
            if (std::fabs(grown[static_cast<size_t>(k)] - (base[static_cast<size_t>(k % S(1.0))] + in[static_cast<size_t>(S(2.5) + k)])) > 1e-6f) ++bad;
        EXPECT_EQ(bad, 0) << "multiply = repeated loop + input";
        r.hitAt(4.8, 0, "undo");
        r.until(4.9);
        EXPECT_FLOAT_EQ(r.get(0, "loop_len"), 1.0f);
        EXPECT_EQ(r.content(0)[0], base);
    }
    {
        Rig r(1);
        auto in = noise(S(8), 12, 0.2f);
        r.input(in, in);
        r.set(0, "quantize", 0.0f);
        r.hitAt(0.5, 0, "record");
        r.hitAt(1.5, 0, "record");
        r.until(2.0);
        const auto base = r.content(0)[0];
        r.hitAt(2.7, 0, "insert");      // at frame 0.2 s
        r.hitAt(3.0, 0, "insert");      // 0.3 s inserted: rounds up to one cycle
        r.until(3.2);
        EXPECT_EQ(r.get(0, "state"), 7.0f);
        r.until(3.9);
        EXPECT_FLOAT_EQ(r.get(0, "loop_len"), 2.0f);
        const auto grown = r.content(0)[0];
        ASSERT_EQ(grown.size(), static_cast<size_t>(S(2.0)));
        const int64_t at = S(0.2), ins = S(1.0);
        int64_t bad = 0;
        for (int64_t k = 0; k < S(2.0); ++k) {
            float want;
            if (k < at) want = base[static_cast<size_t>(k)];
            else if (k < at + ins) want = in[static_cast<size_t>(S(2.7) + (k - at))];
            else want = base[static_cast<size_t>(k - ins)];
            if (k >= at && k < at + kFade) continue; // the inserted audio fades in
            if (std::fabs(grown[static_cast<size_t>(k)] - want) > 1e-6f) ++bad;
        }
        EXPECT_EQ(bad, 0) << "insert = head + input + tail";
    }
}

TEST(Looper, NoClickAtAnyBoundaryOrEdit) {
    Rig r(1);
    // A tone whose period does not divide the loop: only the crossfades keep the wrap smooth.
    const auto tone = sine(441.3, 0.3, static_cast<size_t>(S(10)), kRate);
    r.input(tone, tone);
    r.hitAt(0.5, 0, "record");
    r.hitAt(1.5123, 0, "record");
    r.hitAt(2.1, 0, "mute");
    r.hitAt(2.4, 0, "mute");
    r.hitAt(2.7, 0, "reverse");
    r.hitAt(3.0, 0, "trigger");
    r.hitAt(3.3, 0, "overdub");
    r.hitAt(3.9, 0, "overdub");
    r.hitAt(4.2, 0, "undo");
    r.hitAt(4.5, 0, "redo");
    r.hitAt(4.8, 0, "pause");
    r.hitAt(5.1, 0, "pause");
    r.hitAt(5.4, 0, "oneshot");
    r.until(7.5);
    EXPECT_TRUE(r.s.find("/fail").empty());
    // The loop alone (dry is 0). With the base and an overdub played forwards and then, after the
    // reverse, backwards over itself, up to three tones of 0.3 sum: no step may exceed the
    // steepest slope of three summed tones (a click here measured 0.25-0.29, 7x more).
    const float own = maxStep(tone);
    const float steps = maxStep(r.s.output[0], static_cast<size_t>(S(1.5)), static_cast<size_t>(S(7.5)));
    EXPECT_GT(steps, 0.5f * own); // it did play
    size_t worst = 0;
    for (size_t i = static_cast<size_t>(S(1.5)) + 1; i < static_cast<size_t>(S(7.5)); ++i)
        if (std::fabs(r.s.output[0][i] - r.s.output[0][i - 1]) >= steps) worst = i;
    EXPECT_LT(steps, 3.05f * own) << "a click at " << static_cast<double>(worst) / kRate << " s";
    EXPECT_EQ(r.get(0, "state"), 10.0f); // after the one shot: muted
}

TEST(Looper, OverdubIsAlignedByTheRoundTripLatency) {
    const int D = 300;
    Rig r(1, D);
    // The player hears the loop and plays along: the input is the loop's own click, late by the
    // round trip. The recording itself is taken D frames late too (the same compensation).
    std::vector<float> in(static_cast<size_t>(S(6)), 0.0f);
    const int64_t clickAt = 1000;
    in[static_cast<size_t>(S(0.5) + D + clickAt)] = 0.5f;               // recorded as frame 1000
    for (int n = 1; n < 4; ++n) in[static_cast<size_t>(S(1.5) + n * S(1.0) + clickAt + D)] = 0.5f; // heard, played back
    r.input(in, in);
    r.hitAt(0.5, 0, "record");
    r.hitAt(1.5, 0, "record");
    r.hitAt(2.5, 0, "overdub");
    r.hitAt(3.5, 0, "overdub");
    r.until(4.5);
    const auto loop = r.content(0)[0];
    ASSERT_EQ(loop.size(), static_cast<size_t>(S(1.0)));
    EXPECT_NEAR(loop[clickAt], 1.0f, 1e-6f) << "the overdubbed click lands on the recorded one";
    EXPECT_EQ(loop[clickAt + D], 0.0f);
    EXPECT_NEAR(maxAbs(loop), 1.0f, 1e-6f);
}

TEST(Looper, PaMuteSilencesTheMainsWhileRecordingButNotTheHeadphones) {
    Rig r(1, 0, 64, 4, 2);
    const auto tone = sine(500.0, 0.3, static_cast<size_t>(S(5)), kRate);
    r.input(tone, tone);
    r.set(0, "dry", 1.0f);  // monitor the input through the loop
    r.s.send("/set", "pa_mute", 1.0f);
    r.hitAt(1.0, 0, "record");
    r.hitAt(2.0, 0, "record");
    r.until(3.0);
    auto rmsAt = [&](int ch, double from, double to) { return rms(r.s.output[static_cast<size_t>(ch)], static_cast<size_t>(S(from)), static_cast<size_t>(S(to))); };
    EXPECT_GT(rmsAt(0, 0.5, 0.9), 0.1);   // before: the mains play
    EXPECT_LT(rmsAt(0, 1.1, 1.9), 1e-6);  // recording: muted
    EXPECT_GT(rmsAt(2, 1.1, 1.9), 0.1);   // headphones: still the input
    EXPECT_GT(rmsAt(0, 2.1, 2.9), 0.1);   // after: back
    EXPECT_LT(maxStep(r.s.output[0], static_cast<size_t>(S(0.5)), static_cast<size_t>(S(3.0))), 3.0f * maxStep(tone));
}

TEST(Looper, LoadLoopSwapsAtTheNextBoundaryWithoutAGap) {
    Rig r(1);
    const auto a = noise(S(6), 13);
    r.input(a, a);
    const auto fresh = noise(S(1.0), 14, 0.3f);
    writeWav(r.dir.file("new.wav"), {fresh, fresh}, kRate);
    r.hitAt(0.5, 0, "record");
    r.hitAt(1.5, 0, "record");
    r.until(2.0);
    const auto old = r.content(0)[0];
    r.s.at(2.3, "/sl/0/load_loop", r.dir.file("new.wav").c_str(), kUrl, "/err", 1);
    r.until(3.6);
    EXPECT_EQ(r.s.find("/done", "/sl/0/load_loop").size(), 1u);
    int64_t badOld = 0, badNew = 0;
    for (int64_t t = S(2.3); t < S(2.5); ++t)
        if (std::fabs(r.s.output[0][static_cast<size_t>(t)] - old[static_cast<size_t>((t - S(1.5)) % S(1.0))]) > 1e-6f) ++badOld;
    for (int64_t t = S(2.5) + kFade; t < S(3.5); ++t)
        if (std::fabs(r.s.output[0][static_cast<size_t>(t)] - fresh[static_cast<size_t>(t - S(2.5))]) > 1e-6f) ++badNew;
    EXPECT_EQ(badOld, 0) << "the old content until the boundary";
    EXPECT_EQ(badNew, 0) << "the new content from the boundary";
    EXPECT_EQ(r.content(0)[0], fresh);
}

TEST(Looper, TheJamsJobsMixAndLoadAtTheNextWrapSampleForSample) {
    // The interval jam's use of a loop (net/JamModule): a take mixed in at the loop's next wrap
    // (one undo step), new content swapped in at the next wrap, the wraps counted.
    Rig r(1);
    const auto a = noise(S(8), 21);
    r.input(a, a);
    r.hitAt(0.5, 0, "record");
    r.hitAt(1.5, 0, "record"); // a 1 s loop: wraps at 2.5, 3.5, 4.5 ...
    r.until(1.8);
    const auto old = r.content(0)[0];
    ASSERT_EQ(old.size(), static_cast<size_t>(S(1.0)));
    auto push = [&](cmd::Unit u) {
        Command c;
        c.address = "/jam";
        c.body = u;
        ASSERT_TRUE(r.s.engine().pushCommand(std::move(c)));
    };
    // A take with one click at frame 1234, sent mid-cycle: heard from the next wrap (2.5 s).
    auto take = BufferData::zeros(S(1.0), 2, kRate);
    take->channel(0)[1234] = take->channel(1)[1234] = 0.5f;
    r.until(2.0);
    push(Looper::mixFor(801, take.release()));
    r.until(3.6);
    int64_t bad = 0;
    for (int64_t t = S(2.0); t < S(3.5); ++t) {
        const auto k = static_cast<size_t>((t - S(1.5)) % S(1.0));
        const float want = old[k] + (t >= S(2.5) && k == 1234 ? 0.5f : 0.0f);
        if (std::fabs(r.s.output[0][static_cast<size_t>(t)] - want) > 1e-6f) ++bad;
    }
    EXPECT_EQ(bad, 0) << "the old loop until the wrap, the take added from it";
    auto mixed = r.content(0)[0];
    ASSERT_EQ(mixed.size(), old.size());
    EXPECT_NEAR(mixed[1234] - old[1234], 0.5f, 1e-6f);
    mixed[1234] = old[1234];
    EXPECT_EQ(mixed, old) << "nothing else changed";
    r.hit(0, "undo");
    r.until(3.7);
    EXPECT_EQ(r.content(0)[0], old) << "undo takes the take out exactly";
    // New content at the next wrap (4.5 s), not at once: the cycle in progress plays to its end.
    const auto fresh = noise(S(1.0), 22, 0.3f);
    auto data = BufferData::zeros(S(1.0), 2, kRate);
    std::copy(fresh.begin(), fresh.end(), data->channel(0));
    std::copy(fresh.begin(), fresh.end(), data->channel(1));
    r.until(4.0);
    push(Looper::loadAtFor(801, data.release(), Looper::LoadAt::Wrap));
    r.until(5.6);
    int64_t badOld = 0, badNew = 0;
    for (int64_t t = S(4.0); t < S(4.5); ++t)
        if (std::fabs(r.s.output[0][static_cast<size_t>(t)] - old[static_cast<size_t>((t - S(1.5)) % S(1.0))]) > 1e-6f) ++badOld;
    for (int64_t t = S(4.5) + kFade; t < S(5.5); ++t)
        if (std::fabs(r.s.output[0][static_cast<size_t>(t)] - fresh[static_cast<size_t>(t - S(4.5))]) > 1e-6f) ++badNew;
    EXPECT_EQ(badOld, 0);
    EXPECT_EQ(badNew, 0);
}

// ---------------------------------------------------------------------------------------------
// The SooperLooper namespace

TEST(SooperLooper, RepliesAsItsDocumentationSays) {
    Rig r(2);
    r.s.send("/ping", kUrl, "/pong");
    auto pong = r.s.find("/pong");
    ASSERT_EQ(pong.size(), 1u);
    EXPECT_EQ(pong[0].str(0).rfind("osc.udp://", 0), 0u);
    EXPECT_EQ(pong[0].i(2), 2);
    r.s.send("/sl/1/get", "feedback", kUrl, "/val");
    auto v = r.s.find("/val");
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].i(0), 1);
    EXPECT_EQ(v[0].str(1), "feedback");
    EXPECT_EQ(v[0].num(2), 1.0);
    r.s.send("/set", "eighth_per_cycle", 8.0f);
    r.s.send("/get", "eighth_per_cycle", kUrl, "/g");
    auto g = r.s.find("/g");
    ASSERT_EQ(g.size(), 1u);
    EXPECT_EQ(g[0].i(0), -2);
    EXPECT_EQ(g[0].num(2), 8.0);
    // -1 addresses every loop; -3 the selected one.
    r.s.send("/sl/-1/set", "wet", 0.5f);
    r.s.send("/sl/-1/get", "wet", kUrl, "/all");
    EXPECT_EQ(r.s.find("/all").size(), 2u);
    r.s.send("/set", "selected_loop_num", 1.0f);
    r.s.send("/sl/-3/get", "wet", kUrl, "/sel");
    ASSERT_EQ(r.s.find("/sel").size(), 1u);
    EXPECT_EQ(r.s.find("/sel")[0].i(0), 1);
    // Registered auto updates of state arrive when it changes.
    r.s.send("/sl/0/register_auto_update", "state", 100, kUrl, "/upd");
    r.hit(0, "record");
    r.until(0.3);
    auto u = r.s.find("/upd");
    ASSERT_FALSE(u.empty());
    EXPECT_EQ(u.back().num(2), 2.0);
    r.s.send("/loop_del", -1);
    r.s.send("/ping", kUrl, "/pong");
    EXPECT_EQ(r.s.find("/pong").back().i(2), 1);
    EXPECT_TRUE(r.s.find("/fail").empty());
}

TEST(SooperLooper, BadInputFailsAndLeavesEveryLoopIntact) {
    Rig r(1);
    const auto a = noise(S(4), 15);
    r.input(a, a);
    r.hitAt(0.5, 0, "record");
    r.hitAt(1.5, 0, "record");
    r.until(2.0);
    const auto before = r.content(0)[0];
    const size_t fails0 = r.s.find("/fail").size();
    r.s.send("/sl/3/hit", "record");
    r.s.send("/sl/0/hit", "frobnicate");
    r.s.send("/sl/0/set", "nonsense", 1.0f);
    r.s.send("/sl/0/set", "feedback", 2.0f);
    r.s.send("/sl/0/set", "state", 1.0f);
    r.s.send("/sl/x/hit", "record");
    r.s.send("/sl/0/get", "bogus", kUrl, "/val");
    r.s.send("/sl/0/load_loop", r.dir.file("missing.wav").c_str(), kUrl, "/err");
    r.s.send("/set", "sync_source", 9.0f);
    r.s.send("/loop_add", 7, 1.0f);
    r.until(2.5);
    const auto fails = r.s.find("/fail");
    EXPECT_EQ(fails.size() - fails0, 10u);
    for (size_t i = fails0; i < fails.size(); ++i) EXPECT_FALSE(fails[i].str(1).empty());
    EXPECT_EQ(r.s.find("/err").size(), 1u); // SooperLooper's error path too
    EXPECT_EQ(r.get(0, "state"), 4.0f);
    EXPECT_EQ(r.content(0)[0], before);
}

TEST(SooperLooper, SessionsSaveAndRestoreLoopsAndControls) {
    const auto a = noise(S(4), 16);
    TempDir keep;
    const std::string session = keep.file("set.slsess");
    std::vector<float> saved;
    {
        Rig r(2);
        r.input(a, a);
        r.set(1, "feedback", 0.75f);
        r.hitAt(0.5, 0, "record");
        r.hitAt(1.5, 0, "record");
        r.until(2.0);
        saved = r.content(0)[0];
        r.s.send("/save_session", session.c_str(), kUrl, "/err");
        r.until(2.5);
        EXPECT_EQ(r.s.find("/done", "/save_session").size(), 1u);
    }
    Rig r(0);
    r.s.send("/load_session", session.c_str(), kUrl, "/err");
    r.until(0.5);
    EXPECT_EQ(r.s.find("/done", "/load_session").size(), 1u);
    EXPECT_FLOAT_EQ(r.get(1, "feedback"), 0.75f);
    EXPECT_FLOAT_EQ(r.get(0, "loop_len"), 1.0f);
    EXPECT_EQ(r.content(0)[0], saved);
}

TEST(Looper, SaveRightAfterStopWaitsForTheLastFramesOfTheRoundTrip) {
    // The write head lags the play head by the round trip: a save issued the moment the
    // recording stops still gets the whole loop.
    Rig r(1, 768);
    const auto a = noise(S(4), 17);
    r.input(a, a);
    r.hitAt(0.8, 0, "record");
    r.hitAt(1.8, 0, "record");
    r.until(1.8);
    r.s.render(64);
    const auto loop = r.content(0)[0];
    ASSERT_EQ(loop.size(), static_cast<size_t>(S(1.0)));
    expectRecording(loop, a, S(0.8) + 768, S(1.0), "saved at once");
}

TEST(Looper, ReplaceOverwritesSubstituteKeepsTheLoopAudible) {
    for (const char* cmd : {"replace", "substitute"}) {
        Rig r(1);
        auto in = noise(S(6), 18, 0.2f);
        const auto tone = sine(250.0, 0.2, static_cast<size_t>(S(6)), kRate);
        for (int64_t t = S(1.5); t < S(6); ++t) in[static_cast<size_t>(t)] = tone[static_cast<size_t>(t)];
        r.input(in, in);
        r.hitAt(0.5, 0, "record");
        r.hitAt(1.5, 0, "record");
        r.hitAt(2.5, 0, cmd);     // one whole cycle, from frame 0
        r.hitAt(3.5, 0, cmd);
        r.until(3.0);
        EXPECT_EQ(r.get(0, "state"), std::string(cmd) == "replace" ? 8.0f : 13.0f);
        r.until(4.0);
        const auto loop = r.content(0)[0];
        int64_t bad = 0;
        for (int64_t k = kFade; k < S(1.0); ++k)
            if (std::fabs(loop[static_cast<size_t>(k)] - in[static_cast<size_t>(S(2.5) + k)]) > 1e-6f) ++bad;
        EXPECT_EQ(bad, 0) << cmd << ": the loop is the new input";
        // Replace silences the loop while it replaces; substitute lets it be heard.
        const double during = rms(r.s.output[0], static_cast<size_t>(S(2.6)), static_cast<size_t>(S(3.4)));
        if (std::string(cmd) == "replace") EXPECT_LT(during, 1e-6) << cmd;
        else EXPECT_GT(during, 0.05) << cmd;
    }
}

TEST(Looper, RecThresholdWaitsForTheInputToReachIt) {
    Rig r(1);
    std::vector<float> in(static_cast<size_t>(S(4)), 0.0f);
    const int64_t onset = S(1.2345);
    for (int64_t t = onset; t < S(4); ++t) in[static_cast<size_t>(t)] = 0.3f * std::sin(static_cast<float>(t - onset) * 0.05f + 0.3f);
    r.input(in, in);
    r.set(0, "rec_thresh", 0.05f);
    r.hitAt(0.5, 0, "record");
    r.until(1.0);
    EXPECT_EQ(r.get(0, "state"), 1.0f); // WaitStart: nothing reached the threshold yet
    r.hitAt(2.2345, 0, "record");
    r.until(2.5);
    EXPECT_EQ(r.get(0, "state"), 4.0f);
    const auto loop = r.content(0)[0];
    // The recording began on the first sample at or above the threshold.
    int64_t first = onset;
    while (std::fabs(in[static_cast<size_t>(first)]) < 0.05f) ++first;
    EXPECT_EQ(static_cast<int64_t>(loop.size()), S(2.2345) - first);
    EXPECT_EQ(loop[0], in[static_cast<size_t>(first)]);
}

TEST(SooperLooper, SoloMutesTheOthersAndLongPressesRelease) {
    Rig r(2);
    const auto a = noise(S(8), 19);
    r.input(a, a);
    r.hitAt(0.5, 0, "record");
    r.hitAt(1.5, 0, "record");
    r.hitAt(1.5, 1, "record");
    r.hitAt(2.5, 1, "record");
    r.until(2.6);
    r.hit(1, "solo");
    r.until(2.7);
    EXPECT_EQ(r.get(0, "state"), 10.0f);
    EXPECT_EQ(r.get(1, "state"), 4.0f);
    EXPECT_EQ(r.get(1, "is_soloed"), 1.0f);
    r.hit(1, "solo");
    r.until(2.8);
    EXPECT_EQ(r.get(0, "state"), 4.0f);
    // down/up: a short press toggles on the press only; a long one (>= 0.5 s) releases on up.
    r.s.send("/sl/0/down", "mute");
    r.s.send("/sl/0/up", "mute");
    r.until(2.9);
    EXPECT_EQ(r.get(0, "state"), 10.0f);
    r.s.send("/sl/0/forceup", "mute"); // forced release: toggles back
    r.until(3.0);
    EXPECT_EQ(r.get(0, "state"), 4.0f);
    EXPECT_TRUE(r.s.find("/fail").empty());
}

TEST(Looper, EighthQuantizeAndLoopsSurviveGenericTreeCommands) {
    Rig r(2);
    const auto a = noise(S(6), 20);
    r.input(a, a);
    r.s.send("/set", "eighth_per_cycle", 8.0f);
    r.set(1, "quantize", 2.0f);        // 8th: a cycle of 1 s in eighths of 125 ms
    r.s.send("/set", "quantize_lenience", 0.0f);
    r.hitAt(0.5, 0, "record");
    r.hitAt(1.5, 0, "record");
    r.hitAt(2.03, 1, "record");        // next eighth: 2.125
    r.hitAt(2.9, 1, "record");         // stops on a power-of-two number of cycles: 1 cycle → 3.125
    r.until(3.3);
    EXPECT_FLOAT_EQ(r.get(1, "loop_len"), 1.0f);
    expectRecording(r.content(1)[0], a, S(2.125), S(1.0), "eighth");
    // What sclang sends on Cmd-period and s.freeAll leaves the looper, its loops and their audio.
    r.s.send("/g_freeAll", 0);
    r.s.send("/g_deepFree", 0);
    r.until(3.5);
    EXPECT_TRUE(r.s.find("/fail").empty());
    r.s.send("/n_free", 800);
    r.s.send("/n_free", 802);
    r.until(3.6);
    ASSERT_EQ(r.s.find("/fail", "/n_free").size(), 2u);
    EXPECT_EQ(r.s.find("/fail", "/n_free")[0].str(1), "node 800 belongs to the looper (/loop_del removes a loop)");
    r.s.send("/ping", kUrl, "/pong");
    EXPECT_EQ(r.s.find("/pong").back().i(2), 2);
    EXPECT_FLOAT_EQ(r.get(1, "loop_len"), 1.0f);
    expectRecording(r.content(1)[0], a, S(2.125), S(1.0), "eighth, after /g_freeAll 0");
    // Only the namespace removes a loop.
    r.s.send("/loop_del", 1);
    r.until(3.7);
    r.s.send("/ping", kUrl, "/pong");
    EXPECT_EQ(r.s.find("/pong").back().i(2), 1);
    r.s.send("/loop_add", 1, 2.0f);
    r.until(3.8);
    r.s.send("/ping", kUrl, "/pong");
    EXPECT_EQ(r.s.find("/pong").back().i(2), 2);
    EXPECT_EQ(r.get(1, "state"), 0.0f);
    EXPECT_EQ(r.s.find("/fail").size(), 2u);
}

TEST(Looper, PausingTheNodeEndsARecordingWhereItStopped) {
    Rig r(1);
    const auto a = noise(S(4), 21);
    r.input(a, a);
    r.hitAt(0.5, 0, "record");
    r.s.at(1.0, "/n_run", 801, 0);   // the node itself paused (fades out) mid-recording
    r.s.at(1.5, "/n_run", 801, 1);
    r.until(2.0);
    EXPECT_EQ(r.get(0, "state"), 4.0f);
    const auto loop = r.content(0)[0];
    ASSERT_GE(loop.size(), static_cast<size_t>(S(0.5)));
    EXPECT_LE(loop.size(), static_cast<size_t>(S(0.5) + 512)); // ends within the node's fade-out
    int64_t bad = 0;
    for (int64_t k = 0; k < S(0.5) - kFade; ++k)
        if (loop[static_cast<size_t>(k)] != a[static_cast<size_t>(S(0.5) + k)]) ++bad;
    EXPECT_EQ(bad, 0);
    EXPECT_TRUE(r.s.find("/fail").empty());
}

TEST(Looper, PitchShiftAndTempoStretchKeepTheLoopOnItsGrid) {
    // A loop of 1 s of 441 Hz: pitch_shift 12 plays it an octave up, in place (the shifter is fed
    // ahead of the play head by its latency, so the shifted loop lines up with the plain one);
    // stretch_ratio 2 plays it at half speed with its pitch kept; tempo_stretch makes the ratio
    // the loop's tempo over the clock's.
    Rig r(1);
    const auto tone = sine(441.0, 0.3, static_cast<size_t>(S(1.0)), kRate);
    writeWav(r.dir.file("tone.wav"), {tone, tone}, kRate);
    r.s.send("/sl/0/load_loop", r.dir.file("tone.wav").c_str(), kUrl, "/err");
    r.until(0.5);
    ASSERT_EQ(r.s.find("/done", "/sl/0/load_loop").size(), 1u);
    const auto& out = r.s.output[0];
    EXPECT_NEAR(zeroCrossingHz(out, S(0.1), S(0.5), kRate), 441.0, 0.5);
    r.set(0, "pitch_shift", 12.0f);
    r.until(2.0);
    EXPECT_NEAR(zeroCrossingHz(out, S(1.0), S(2.0), kRate), 882.0, 2.0) << "an octave up";
    // The shift does not move the play head (PitchShiftedLoopsStayInTime measures the timing).
    EXPECT_NEAR(r.get(0, "loop_pos"), 0.0, 0.02); // 2.0 s: whole cycles since the load
    EXPECT_NEAR(rms(out, static_cast<size_t>(S(1.2)), static_cast<size_t>(S(2.0))), 0.3 / std::sqrt(2.0), 0.03) << "no loss of level";
    r.set(0, "pitch_shift", 0.0f);
    r.set(0, "stretch_ratio", 2.0f);
    const float posBefore = r.get(0, "loop_pos");
    r.until(3.0);
    const float posAfter = r.get(0, "loop_pos");
    EXPECT_NEAR(std::fmod(posAfter - posBefore + 1.0f, 1.0f), 0.5f, 0.01f) << "half speed: half the loop in a second";
    EXPECT_NEAR(zeroCrossingHz(out, S(2.3), S(3.0), kRate), 441.0, 2.0) << "its pitch kept";
    EXPECT_NEAR(r.get(0, "rate_output"), 0.5f, 1e-6f);
    // tempo_stretch: 8 eighths in the 1 s cycle is 240 BPM; at the clock's 120 the loop plays at
    // half speed, at 240 at its own.
    r.set(0, "stretch_ratio", 1.0f);
    r.s.send("/set", "eighth_per_cycle", 8.0f);
    r.set(0, "tempo_stretch", 1.0f);
    r.until(3.2);
    EXPECT_NEAR(r.get(0, "rate_output"), 0.5f, 1e-3f);
    r.s.send("/set", "tempo", 240.0f);
    r.until(3.3);
    EXPECT_NEAR(r.get(0, "rate_output"), 1.0f, 1e-3f);
    r.until(4.0);
    EXPECT_NEAR(zeroCrossingHz(out, S(3.5), S(4.0), kRate), 441.0, 2.0);
    EXPECT_TRUE(r.s.find("/fail").empty());
}

TEST(Looper, PitchShiftedLoopsStayInTime) {
    // Two 5 ms bursts in a 1 s loop, at 0.25 and 0.75 s: shifted up a fifth, they still sound
    // where the loop plays them (the shifter's latency is fed ahead, not heard).
    Rig r(1);
    std::vector<float> x(static_cast<size_t>(S(1.0)), 0.0f);
    const auto burst = noise(static_cast<size_t>(S(0.005)), 31, 0.5f);
    for (double at : {0.25, 0.75})
        std::copy(burst.begin(), burst.end(), x.begin() + S(at));
    writeWav(r.dir.file("clicks.wav"), {x, x}, kRate);
    r.s.send("/sl/0/load_loop", r.dir.file("clicks.wav").c_str(), kUrl, "/err");
    r.until(0.01);
    r.set(0, "pitch_shift", 7.0f);
    r.until(4.0);
    // The loop started at the load (time ~0): bursts at k + 0.25 and k + 0.75 s.
    const auto& out = r.s.output[0];
    auto onset = [&](int64_t from, int64_t to) {
        for (int64_t t = from; t < to; ++t)
            if (std::fabs(out[static_cast<size_t>(t)]) > 0.05f) return t;
        return int64_t(-1);
    };
    const int64_t loaded = [&] { // where the loop's first burst sounded unshifted
        const int64_t t = onset(S(0.0), S(0.5));
        return t - S(0.25);
    }();
    for (double at : {2.25, 2.75, 3.25, 3.75}) {
        const int64_t t = onset(loaded + S(at - 0.05), loaded + S(at + 0.05));
        ASSERT_GE(t, 0) << "a burst near " << at;
        const double errMs = 1000.0 * static_cast<double>(t - (loaded + S(at))) / kRate;
        std::printf("burst at %.2f s: %+.2f ms\n", at, errMs);
        EXPECT_LT(std::fabs(errMs), 5.0) << at;
    }
    EXPECT_TRUE(r.s.find("/fail").empty());
}

TEST(Looper, OnsetQuantizeSnapsRecordPressesToTheNearestOnsetWithinTheLenience) {
    // Drum-like hits on the input at 1, 2, 3 and 4 s (noise bursts: what aubio's detector hears).
    // quantize 4: a record press 60 ms after the 1 s hit starts the loop on it, a stop press
    // 40 ms before the 3 s hit ends it there (the loop: 2 s, its first frames the hit). Presses
    // with no onset within quantize_lenience (0.1 s) stand where they were made.
    std::vector<float> in(static_cast<size_t>(S(8)), 0.0f);
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (double hit : {1.0, 2.0, 3.0, 4.0, 6.0})
        for (int64_t k = 0; k < S(0.08); ++k) in[static_cast<size_t>(S(hit) + k)] = 0.6f * u(rng) * std::exp(-static_cast<float>(k) / 800.0f);
    auto rig = [&](float quantize) {
        auto r = std::make_unique<Rig>();
        r->input(in, in);
        r->set(0, "quantize", quantize);
        return r;
    };
    {
        auto rp = rig(4);
        Rig& r = *rp;
        r.hitAt(1.06, 0, "record");
        r.until(1.5);
        EXPECT_EQ(r.get(0, "state"), 2.0f); // Recording (from the hit)
        r.hitAt(2.96, 0, "record");
        r.until(3.5);
        EXPECT_EQ(r.get(0, "state"), 4.0f); // Playing
        const float len = r.get(0, "loop_len");
        std::printf("onset quantize: presses at 1.06 and 2.96 s, loop of %.4f s\n", len);
        EXPECT_NEAR(len, 2.0f, 0.005f);
        const auto loop = r.content(0);
        ASSERT_FALSE(loop[0].empty());
        // Where the loop starts in the input: the offset from the hit whose input matches the
        // loop's first 20 ms sample for sample.
        int64_t start = INT64_MIN;
        for (int64_t d = -S(0.01); d <= S(0.01) && start == INT64_MIN; ++d) {
            bool same = true;
            for (int64_t k = 0; k < S(0.02) && same; ++k) same = std::fabs(loop[0][static_cast<size_t>(k)] - in[static_cast<size_t>(S(1.0) + d + k)]) < 1e-6f;
            if (same) start = d;
        }
        std::printf("the loop starts %.2f ms from the hit\n", static_cast<double>(start) / 48.0);
        ASSERT_NE(start, INT64_MIN) << "the loop's start is not within 10 ms of the hit";
        EXPECT_LT(std::fabs(static_cast<double>(start)) / 48.0, 5.0);
    }
    {
        auto rp = rig(4); // no onset within 0.1 s of either press: they stand
        Rig& r = *rp;
        r.hitAt(4.5, 0, "record");
        r.hitAt(5.5, 0, "record");
        r.until(6.5);
        EXPECT_NEAR(r.get(0, "loop_len"), 1.0f, 1e-4f);
    }
    {
        auto rp = rig(0); // quantize 0: the same presses as the first make a 1.9 s loop
        Rig& r = *rp;
        r.hitAt(1.06, 0, "record");
        r.hitAt(2.96, 0, "record");
        r.until(3.5);
        EXPECT_NEAR(r.get(0, "loop_len"), 1.9f, 1e-4f);
    }
}

TEST(Looper, AnIdleLooperRendersWhatTheSampleBySampleLoopRenders) {
    // Loops that stay empty (one stereo, one mono panned), that record late, and one that plays,
    // overdubs, undoes and clears back to empty; dry and wet ramps, mute and a pan change; with and
    // without round-trip latency, at block sizes that do not divide the event times: the idle
    // shortcut gives the per-sample loop's output bit for bit, and it was taken.
    const auto a = noise(S(8), 21), b = noise(S(8), 22);
    for (int roundTrip : {0, 300})
        for (int block : {64, 1000}) {
            auto run = [&](bool shortcut) {
                Looper::setIdleShortcut(shortcut);
                Rig r(0, roundTrip, block);
                r.s.send("/loop_add", 2, 0.0f);
                r.s.send("/loop_add", 1, 0.0f);
                r.s.send("/loop_add", 2, 0.0f);
                r.input(a, b);
                for (int loop : {0, 1, 2}) r.set(loop, "dry", 0.6f);
                r.set(1, "pan_1", 0.2f);
                r.s.at(0.37, "/sl/0/set", "dry", 0.9f);
                r.s.at(0.81, "/sl/1/set", "pan_1", 0.8f);
                r.hitAt(0.5, 2, "record");
                r.hitAt(1.3, 2, "record");
                r.hitAt(1.9, 2, "overdub");
                r.hitAt(2.45, 2, "overdub");
                r.hitAt(2.9, 2, "undo");
                r.hitAt(3.2, 2, "mute");
                r.s.at(3.5, "/sl/2/set", "wet", 0.3f);
                r.hitAt(3.8, 2, "mute");
                r.hitAt(4.1, 1, "record");
                r.hitAt(4.7, 1, "record");
                r.hitAt(5.3, 2, "undo_all");
                r.s.at(5.6, "/sl/0/set", "dry", 0.0f);
                r.until(7.0);
                EXPECT_TRUE(r.s.find("/fail").empty());
                Looper::setIdleShortcut(true);
                return r.s.output;
            };
            const uint64_t before = Looper::idleFrames();
            const auto fast = run(true);
            const uint64_t idle = Looper::idleFrames() - before;
            const auto slow = run(false);
            EXPECT_EQ(Looper::idleFrames() - before, idle) << "the slow run took no shortcut";
            // Loop 0 is empty throughout, loop 1 for 4.1 s, loop 2 for 0.5 s and after undo_all.
            EXPECT_GT(idle, static_cast<uint64_t>(S(7.0) + S(4.0) + S(0.5))) << "block " << block;
            ASSERT_EQ(fast.size(), slow.size());
            for (size_t c = 0; c < fast.size(); ++c) {
                ASSERT_EQ(fast[c].size(), slow[c].size());
                size_t differ = 0, first = 0;
                for (size_t i = 0; i < fast[c].size(); ++i)
                    if (fast[c][i] != slow[c][i] && differ++ == 0) first = i;
                EXPECT_EQ(differ, 0u) << "channel " << c << ", block " << block << ", round trip " << roundTrip
                                      << ": first at " << static_cast<double>(first) / kRate << " s";
            }
            EXPECT_GT(maxStep(fast[0]), 0.1f); // it played
        }
}
