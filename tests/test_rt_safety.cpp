// Proof that the audio thread never allocates, frees or locks: malloc, calloc, realloc, free,
// operator new/delete and pthread_mutex_lock are interposed in this executable and count the
// calls made while the engine is inside process() (rt::inAudioCallback()).
//
// 1. A busy offline render: 32 looping stereo players at two rates with ramps, parameter storms,
//    node churn, buffer swaps, recordings, tree queries, timed bundles.
// 2. With LOOPD_JACK=1 (scripts/test starts `jackd -d dummy`): the same load in real time on
//    JACK for 10 s through the RtAudio driver — 0 calls and no block over its budget.
//
// Xruns. This is a shared VM: the host deschedules JACK's own threads (jackd logs "JackTimedDriver::
// Process XRun = N usec" when its driver woke late, "client = loopd was not finished, state =
// Triggered" when loopd's thread had not even been woken) while loopd's blocks cost a few % of
// the period. A clean-clone CI run had xruns in all three 10 s windows with the peak block at
// 5.8-10.7 % of the period; the same afternoon, idle, this machine had 4-15 in every window, and
// now and then one block of 1200 % of its period in the thread's own CPU time (this VM reports no
// steal time: a stalled virtual CPU counts as the running thread's). So xruns, peaks and blocks
// over budget are printed, not asserted (timed assertions on a noisy machine, STYLE). Asserted:
// no allocation, free or lock; the stream kept pace (9.5 s of frames per 10 s); and the mean
// load over the window (wall-clock time in process() / window) under half the machine's time —
// a few stalls add a percent or two, a render that got expensive or blocks on something fails.
#include <dlfcn.h>
#include <execinfo.h>
#include <unistd.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <cstdlib>
#include <new>
#include <thread>

#include "server/drivers/Driver.h"
#include "server/engine/StretchWorker.h"
#include "server/engine/BufferData.h"
#include "server/net/LinkSession.h"
#include "server/nodes/looper/Looper.h"
#include "stretch/Stretcher.h"
#include "server/rt/RtCheck.h"
#include "support/OfflineServer.h"

extern "C" void* __libc_malloc(size_t);
extern "C" void* __libc_calloc(size_t, size_t);
extern "C" void* __libc_realloc(void*, size_t);
extern "C" void __libc_free(void*);
extern "C" void* __libc_memalign(size_t, size_t);

namespace {
std::atomic<long> g_allocs{0}, g_frees{0}, g_locks{0};
using LockFn = int (*)(pthread_mutex_t*);
LockFn g_realLock = nullptr;
__attribute__((constructor)) void resolveLock() { g_realLock = reinterpret_cast<LockFn>(dlsym(RTLD_NEXT, "pthread_mutex_lock")); }
// LOOPD_RT_TRACE=1: print the stack of the first offending call (backtrace_symbols_fd does not
// allocate), to find what allocated.
std::atomic<bool> g_traced{false};
void traceOnce() {
    static const bool enabled = std::getenv("LOOPD_RT_TRACE") != nullptr;
    if (!enabled || g_traced.exchange(true)) return;
    void* frames[40];
    const int n = backtrace(frames, 40);
    backtrace_symbols_fd(frames, n, 2);
}
inline void countAlloc() {
    if (!loopd::rt::inAudioCallback()) return;
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    traceOnce();
}
inline void countFree(void* p) {
    if (!p || !loopd::rt::inAudioCallback()) return;
    g_frees.fetch_add(1, std::memory_order_relaxed);
    traceOnce();
}
} // namespace

extern "C" {
void* malloc(size_t n) { countAlloc(); return __libc_malloc(n); }
void* calloc(size_t a, size_t b) { countAlloc(); return __libc_calloc(a, b); }
void* realloc(void* p, size_t n) { countAlloc(); return __libc_realloc(p, n); }
void free(void* p) { countFree(p); __libc_free(p); }
// Aligned allocation (Rubber Band allocates through posix_memalign): counted like malloc.
int posix_memalign(void** out, size_t align, size_t n) {
    countAlloc();
    void* p = __libc_memalign(align, n);
    if (!p) return 12; // ENOMEM
    *out = p;
    return 0;
}
void* aligned_alloc(size_t align, size_t n) { countAlloc(); return __libc_memalign(align, n); }
void* memalign(size_t align, size_t n) { countAlloc(); return __libc_memalign(align, n); }
int pthread_mutex_lock(pthread_mutex_t* m) {
    if (loopd::rt::inAudioCallback()) g_locks.fetch_add(1, std::memory_order_relaxed);
    return g_realLock ? g_realLock(m) : 0;
}
}
void* operator new(size_t n) { countAlloc(); if (void* p = __libc_malloc(n ? n : 1)) return p; throw std::bad_alloc(); }
void* operator new[](size_t n) { countAlloc(); if (void* p = __libc_malloc(n ? n : 1)) return p; throw std::bad_alloc(); }
void operator delete(void* p) noexcept { countFree(p); __libc_free(p); }
void operator delete[](void* p) noexcept { countFree(p); __libc_free(p); }
void operator delete(void* p, size_t) noexcept { countFree(p); __libc_free(p); }
void operator delete[](void* p, size_t) noexcept { countFree(p); __libc_free(p); }
void* operator new(size_t n, std::align_val_t a) { countAlloc(); if (void* p = __libc_memalign(static_cast<size_t>(a), n ? n : 1)) return p; throw std::bad_alloc(); }
void* operator new[](size_t n, std::align_val_t a) { countAlloc(); if (void* p = __libc_memalign(static_cast<size_t>(a), n ? n : 1)) return p; throw std::bad_alloc(); }
void operator delete(void* p, std::align_val_t) noexcept { countFree(p); __libc_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { countFree(p); __libc_free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { countFree(p); __libc_free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { countFree(p); __libc_free(p); }

using namespace loopd;
using namespace loopd::test;

namespace {
void resetCounters() { g_allocs = 0; g_frees = 0; g_locks = 0; }

// The busy scene: 32 looping stereo players in 4 groups, half at rate 1, half at 1.01.
void buildScene(OfflineServer& s, TempDir& dir) {
    auto l = sine(220.0, 0.05, 48000, 48000.0), r = sine(330.0, 0.05, 48000, 48000.0);
    writeWav(dir.file("a.wav"), {l, r}, 48000);
    writeWav(dir.file("b.wav"), {r, l}, 44100);
    s.send("/b_allocRead", 1, dir.file("a.wav").c_str());
    s.send("/b_allocRead", 2, dir.file("b.wav").c_str());
    // Material for the analysis paths: /b_analyze, players with bpm -1 and align 1.
    const auto c = sine(110.0, 0.3, 4 * 48000, 48000.0);
    writeWav(dir.file("c.wav"), {c, c}, 48000);
    s.send("/b_allocRead", 9, dir.file("c.wav").c_str());
    s.send("/b_analyze", 9);
    for (int g = 0; g < 4; ++g) s.send("/g_new", 10 + g, 1, 0);
    for (int i = 0; i < 32; ++i)
        s.send("/s_new", "player", 100 + i, 1, 10 + i % 4, "buf", 1 + i % 2, "loop", 1, "rate", i % 2 ? 1.01f : 1.0f,
               "gain", 0.1f, "pan", static_cast<float>(i % 5) * 0.4f - 0.8f);
    // Tempo followers through each time-stretch engine, and effects in the chains.
    const char* methods[] = {"rb2", "rb3", "wsola"};
    for (int i = 0; i < 3; ++i)
        s.send("/s_new", "player", 300 + i, 0, 10 + i, "buf", 1, "loop", 1, "follow", 1, "stretch", methods[i], "gain", 0.1f);
    s.send("/s_new", "eq3", 400, 1, 10);
    s.send("/s_new", "filter", 401, 1, 11, "lfoBeats", 1.0f, "lfoDepthOctaves", 2.0f, "q", 4.0f);
    s.send("/s_new", "delay", 402, 1, 12, "delayBeats", 0.75f, "feedback", 0.5f);
    s.send("/s_new", "reverb", 403, 1, 13, "room", 0.8f);
    s.send("/s_new", "stutter", 404, 1, 13, "division", 16, "engage", 1);
    s.send("/s_new", "limiter", 405, 1, 0);
    // Two loops of the looper, recording the (noise) input.
    s.send("/loop_add", 2, 8.0f);
    s.send("/loop_add", 1, 8.0f);
    writeWav(dir.file("loop.wav"), {sine(440.0, 0.1, 30000, 48000.0)}, 48000);
    s.send("/n_map", 102, "gain", 5);
}

// One tick of control traffic: storms of sets, ramps, churn, swaps, queries.
void churn(OfflineServer& s, TempDir& dir, int tick, double now) {
    for (int i = 0; i < 32; ++i) s.send("/n_set", 100 + i, "gain", 0.05f + 0.001f * static_cast<float>((tick + i) % 50));
    s.send("/n_ramp", 100 + tick % 32, "rate", 0.9f + 0.01f * static_cast<float>(tick % 20), 0.3f);
    s.send("/n_set", 10 + tick % 4, "solo", tick % 3 == 0 ? 1 : 0);
    s.send("/n_run", 100 + (tick * 7) % 32, tick % 2);
    s.send("/s_new", "player", 1000 + tick, 0, 11, "buf", 1, "startWith", 100, "offset", 0.01f);
    s.send("/n_free", 1000 + tick - 1);
    if (tick % 10 == 3) {
        s.send("/s_new", "player", 6000 + tick, 0, 12, "buf", 9, "loop", 1, "bpm", -1, "follow", 1, "align", 1, "downbeat", tick % 20 == 3 ? -1 : 100);
        s.send("/n_free", 6000 + tick - 10);
    }
    if (tick == 5) { s.send("/tempo_source", "analysis", 1); s.send("/analysis/bpm", 118.0f, 0.9f); }
    if (tick == 40) s.send("/tempo_source", "manual");
    s.packet(bundleAt(now + 0.02, {msg("/n_set", 100, "pan", 0.3f), msg("/s_new", "player", 5000 + tick, 1, 12, "buf", 2)}));
    s.send("/n_after", 10, 13);
    s.send("/g_queryTree", 0, 1);
    s.send("/n_query", 101);
    if (tick % 10 == 0) s.send("/b_allocRead", 2, dir.file(tick % 20 ? "a.wav" : "b.wav").c_str());
    if (tick == 5) s.send("/rec_start", dir.file("rec.wav").c_str());
    if (tick == 40) s.send("/rec_stop");
    s.send("/n_free", 999999); // a failing command answers /fail from the audio thread
    // The clock moves: followers change their stretch ratios, beat delays and LFOs follow.
    if (tick % 5 == 0) s.send("/tempo", 100.0f + static_cast<float>(tick % 40), 0.2f);
    // Timetagged tempo steps (the forecast) and stretched followers: timetagged ones pre-roll,
    // immediate ones catch up with their grid.
    if (tick % 5 == 2) s.packet(bundleAt(now + 0.03, {msg("/set_tempo", 110.0f + static_cast<float>(tick % 20))}));
    static const char* stretchers[] = {"rb2", "rb3", "wsola"};
    s.packet(bundleAt(now + 0.04, {msg("/s_new", "player", 6000 + tick, 0, 13, "buf", 1, "loop", 1, "follow", 1, "stretch", stretchers[tick % 3], "gain", 0.05f)}));
    s.send("/s_new", "player", 7000 + tick, 0, 13, "buf", 2, "follow", 1, "stretch", stretchers[(tick + 1) % 3], "gain", 0.05f);
    s.send("/n_free", 6000 + tick - 2);
    s.send("/n_free", 7000 + tick - 2);
    // Load shedding, as an overloaded stretch thread asks for it: a sounding follower goes to
    // varispeed and comes back (re-primed), a new one is shed before its first stretched frame.
    if (StretchWorker* w = s.stretchWorker()) {
        if (StretchVoice* v = w->voiceOf(300 + (tick / 6) % 3)) v->shedRequest.store(tick % 6 < 3);
        if (StretchVoice* v = w->voiceOf(7000 + tick - 1)) v->shedRequest.store(true);
    }
    if (tick % 7 == 0) s.send("/dance/total_movement", static_cast<float>(tick % 10) / 10.0f);
    s.send("/n_set", 404, "engage", tick % 4 < 2 ? 1 : 0);
    s.send("/n_set", 300 + tick % 3, "pitch", static_cast<float>(tick % 5) - 2.0f);
    // The looper through its whole command set: record, overdub, multiply, insert, undo/redo,
    // capture, reverse, mute, load at the next boundary, save.
    static const char* cmds[] = {"record", "record", "overdub", "overdub", "undo", "redo", "multiply", "multiply",
                                 "reverse", "insert", "insert", "mute", "mute", "trigger", "undo_all", "redo_all"};
    s.send("/sl/0/hit", cmds[tick % 16]);
    s.send("/sl/1/hit", tick % 8 == 4 ? "capture" : cmds[(tick + 5) % 16]);
    s.send("/sl/0/get", "state", "osc.udp://127.0.0.1:9/", "/st");
    if (tick % 20 == 10) s.send("/sl/1/load_loop", dir.file("loop.wav").c_str(), "osc.udp://127.0.0.1:9/", "/err", 1);
    if (tick % 20 == 3) s.send("/sl/0/save_loop", dir.file("saved.wav").c_str(), "float", "little", "osc.udp://127.0.0.1:9/", "/err");
    if (tick == 30) s.send("/set", "pa_mute", 1.0f);
    if (tick == 45) s.send("/set", "pa_mute", 0.0f);
    // Loop 1 pitch-shifted and tempo-stretched (its shifter on the stretch worker).
    s.send("/sl/1/set", "pitch_shift", static_cast<float>(tick % 5) - 2.0f);
    if (tick % 10 == 5) s.send("/sl/1/set", "tempo_stretch", static_cast<float>((tick / 10) % 2));
    // Control buses a parameter follows, scsynth's queries, /clearSched.
    s.send("/c_set", 5, 0.05f + 0.001f * static_cast<float>(tick % 30));
    s.send("/c_get", 5);
    s.send("/s_get", 101, "gain", "rate");
    if (tick == 50) s.send("/clearSched");
}
} // namespace

TEST(RtSafety, TheHookSeesAllocationsInsideTheAudioScope) {
    // Negative control: if the hook could not see anything, the tests below would prove nothing.
    resetCounters();
    {
        rt::AudioCallbackScope scope;
        void* volatile p = std::malloc(100);
        std::free(p);
        void* q = nullptr;
        if (posix_memalign(&q, 64, 256) == 0) std::free(q);
        pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
    }
    EXPECT_EQ(g_allocs.load(), 2);
    EXPECT_EQ(g_frees.load(), 2);
    EXPECT_EQ(g_locks.load(), 1);
}

TEST(RtSafety, BusyOfflineRenderNeverAllocatesOrLocksOnTheAudioThread) {
    EngineConfig cfg = OfflineServer::defaultConfig();
    cfg.maxNodes = 2048;
    cfg.stretchAhead = true; // stretchers on the stretch worker, as in the real-time server
    OfflineServer s(cfg);
    TempDir dir;
    // The session log's two audio-thread paths run too: the input tap and the block marks.
    RecordSlot inputTap(48000 * 10, 2);
    s.engine().startSessionLog(&inputTap);
    s.input = {sine(300.0, 0.2, 48000 * 8, 48000.0), sine(500.0, 0.2, 48000 * 8, 48000.0)};
    buildScene(s, dir);
    s.send("/set", "output_midi_clock", 1.0f); // MIDI clock out on the audio thread
    s.send("/add_midi_binding", "0 n 60  hit trigger -1  0 1  norm 0 127"); // a pad: runs on the audio thread
    s.render(4800);
    resetCounters();
    int acked = 0, marks = 0;
    bool lateStarted = false;
    for (int tick = 0; tick < 60; ++tick) {
        churn(s, dir, tick, static_cast<double>(s.output[0].size()) / 48000.0);
        {
            // MIDI in as the JACK driver hands it over on the audio thread: clock ticks (the
            // follower), a note for the bindings, Song Position, Start.
            rt::AudioCallbackScope audio;
            const uint8_t clock = 0xf8, start = 0xfa, note[3] = {0x90, 60, 100}, spp[3] = {0xf2, 8, 0};
            for (int k = 0; k < 3; ++k) s.engine().midiIn(k * 800, &clock, 1);
            s.engine().midiIn(100, note, 3);
            if (tick % 20 == 0) { s.engine().midiIn(200, spp, 3); s.engine().midiIn(300, &start, 1); }
        }
        if (tick == 30) s.send("/project_save", dir.file("proj").c_str()); // a full tree snapshot on the audio thread
        // The stretch threads stall for five ticks (0.25 s): a follower started then waits
        // 0.1 s for its first output, is started by the varispeed (a late start) and joined by
        // the stretched output once the threads run again.
        if (tick == 40) {
            s.stretchWorker()->stop();
            s.send("/s_new", "player", 8000, 0, 13, "buf", 1, "loop", 1, "follow", 1, "stretch", "rb3", "gain", 0.05f);
        }
        if (tick == 50) s.send("/n_free", 8000);
        s.render(2400);
        if (tick == 44) {
            const StretchVoice* v = s.stretchWorker()->voiceOf(8000);
            lateStarted = v && v->playing.load() && v->output.readableFrames() == 0;
            s.stretchWorker()->start();
        }
        acked += s.stretchWorker()->voiceOf(300 + (tick / 6) % 3)->shed.load() == (tick % 6 < 3);
        for (Engine::SessionMark m; s.engine().popSessionMark(m);) ++marks;
    }
    s.stopRecordings();
    ASSERT_NE(s.stretchWorker()->voiceOf(7058), nullptr);
    EXPECT_TRUE(s.stretchWorker()->voiceOf(7058)->shed.load()) << "shed before its first stretched frame";
    EXPECT_EQ(acked, 60) << "every shed and restore request was followed";
    EXPECT_TRUE(lateStarted) << "a player without stretched output 0.1 s after its start sounds at varispeed";
    EXPECT_GE(marks, 60) << "a session mark for every block that took commands";
    EXPECT_EQ(s.engine().sessionMarksLost(), 0u);
    EXPECT_EQ(static_cast<int64_t>(inputTap.ring.readableFrames()), s.engine().sampleTime()) << "the input tap kept every frame";
    EXPECT_EQ(g_allocs.load(), 0);
    EXPECT_EQ(g_frees.load(), 0);
    EXPECT_EQ(g_locks.load(), 0);
    // The load was real: the players sound and the commands went through.
    EXPECT_GT(maxAbs(s.output[0], s.output[0].size() - 4800), 0.005f);
    EXPECT_GE(s.find("/fail", "/n_free").size(), 60u);
    EXPECT_GE(s.find("/g_queryTree.reply").size(), 60u);
    EXPECT_EQ(s.find("/done", "/rec_stop").size(), 1u);
    EXPECT_EQ(s.find("/done", "/project_save").size(), 1u);
    EXPECT_GE(s.find("/done", "/sl/1/load_loop").size(), 2u);
    EXPECT_GE(s.find("/done", "/sl/0/save_loop").size(), 1u);
    EXPECT_EQ(s.find("/st").size(), 60u);
    EXPECT_GT(s.midiOut.size(), 24u * 4) << "MIDI clock out ran (3 s of it)";
    EXPECT_GT(s.engine().midiClockBpm(), 0.0) << "the MIDI clock in was heard";
    for (const auto& f : s.find("/fail")) EXPECT_NE(f.str(0).rfind("/sl", 0), 0u) << f.str(0) << ": " << f.str(1);
}

TEST(RtSafety, TheJamsLoopJobsNeverAllocateOrLockOnTheAudioThread) {
    // The interval jam's looper jobs (net/JamModule): mixes and loads at the next wrap or bar,
    // takes from the capture ring, two saves at once; the buffers are made and freed on the
    // control side, the audio thread only copies.
    OfflineServer s(OfflineServer::defaultConfig());
    s.input = {sine(300.0, 0.2, 48000 * 12, 48000.0), sine(500.0, 0.2, 48000 * 12, 48000.0)};
    s.send("/loop_add", 2, 4.0f);
    s.send("/sl/0/hit", "record");
    s.render(48000);
    s.send("/sl/0/hit", "record"); // a 1 s loop (node 801)
    s.render(4800);
    auto push = [&](cmd::Unit u) {
        Command c;
        c.address = "/jam";
        c.body = u;
        ASSERT_TRUE(s.engine().pushCommand(std::move(c)));
    };
    resetCounters();
    for (int cycle = 0; cycle < 6; ++cycle) {
        push(Looper::mixFor(801, BufferData::zeros(48000, 2, 48000.0).release()));
        push(Looper::takeFor(801, BufferData::zeros(48000, 2, 48000.0).release(), cycle % 2));
        push(Looper::saveFor(801, BufferData::zeros(48000, 2, 48000.0).release()));
        push(Looper::saveFor(801, BufferData::zeros(48000, 2, 48000.0).release()));
        push(Looper::loadAtFor(801, BufferData::zeros(48000, 2, 48000.0).release(), cycle % 3 == 0 ? Looper::LoadAt::Wrap : cycle % 3 == 1 ? Looper::LoadAt::Bar : Looper::LoadAt::Beat));
        s.render(48000);
    }
    EXPECT_EQ(g_allocs.load(), 0);
    EXPECT_EQ(g_frees.load(), 0);
    EXPECT_EQ(g_locks.load(), 0);
    EXPECT_TRUE(s.find("/fail").empty()) << s.find("/fail")[0].str(1);
}

TEST(RtSafety, ALinkPeerOnTheAudioThreadNeverAllocatesOrLocks) {
    // The engine's Link half: once a period the host time (HostTimeFilter), once a block the
    // session captured, loopd's tempo changes committed, the phase compared. The session is
    // not enabled here (a unit test stays off the network); the audio thread's calls are the
    // same ones.
    OfflineServer s(OfflineServer::defaultConfig());
    net::LinkSession link(120.0);
    Command c;
    c.address = "/link";
    c.body = cmd::ClockPeerOn{&link, false};
    ASSERT_TRUE(s.engine().pushCommand(std::move(c)));
    s.send("/tempo", 99.0f);
    s.render(4800);
    resetCounters();
    // Every tempo is higher than the last: a lower one read back (Link serving an older commit
    // of loopd's own while its thread catches up) must never be taken for a peer's.
    double lowest = 0.0, fellBy = 0.0;
    for (int i = 0; i < 40; ++i) {
        s.send("/tempo", 100.0f + static_cast<float>(i), 0.05f); // ramps: committed every 20 ms
        for (int p = 0; p < 10; ++p) {
            {
                rt::AudioCallbackScope audio;
                link.period(s.engine().sampleTime(), 48000.0, 64);
            }
            s.render(256);
            const double bpm = link.snapshot().bpm;
            fellBy = std::max(fellBy, lowest - bpm);
            lowest = std::max(lowest, bpm);
        }
    }
    EXPECT_EQ(fellBy, 0.0) << "the tempo went back: an own commit read back was taken for a peer's";
    for (int p = 0; p < 20; ++p) {
        {
            rt::AudioCallbackScope audio;
            link.period(s.engine().sampleTime(), 48000.0, 64);
        }
        s.render(256);
    }
    EXPECT_EQ(g_allocs.load(), 0);
    EXPECT_EQ(g_frees.load(), 0);
    EXPECT_EQ(g_locks.load(), 0);
    // The session has loopd's last tempo (committed from the audio thread).
    const net::LinkSession::Snapshot snap = link.snapshot();
    EXPECT_NEAR(snap.bpm, 139.0, 1e-6);
    // (The phase is not judged here: an offline render runs faster than Link's clock. The e2e
    // test judges it in real time: tests/e2e/test_link.py.)
}

TEST(RtSafety, ThirtyTwoPlayersOnJackForTenSecondsWithinBudgetAndWithoutAllocations) {
    if (!std::getenv("LOOPD_JACK")) GTEST_SKIP() << "set LOOPD_JACK=1 with a JACK server running (scripts/test does)";
    mlockall(MCL_CURRENT | MCL_FUTURE); // as the server does
    DriverOptions d;
    d.name = "jack";
    d.periodFrames = 256;
    std::unique_ptr<Driver> driver = openDriver(d); // throws (fails the test) when JACK is not there
    EngineConfig cfg;
    cfg.sampleRate = driver->sampleRate();
    cfg.maxNodes = 2048;
    Engine engine(cfg);
    Worker worker;
    Recorder recorder(cfg.sampleRate, false);
    PathPolicy paths;
    const ControllerOptions copts;
    Controller controller(engine, worker, recorder, paths, copts);
    std::atomic<int> fails{0};
    controller.setSender([&](const loopd::osc::Endpoint&, const char* data, size_t size) {
        ::osc::ReceivedMessage m(::osc::ReceivedPacket(data, static_cast<::osc::osc_bundle_element_size_t>(size)));
        if (std::string(m.AddressPattern()) == "/fail") fails++;
        return true;
    });
    worker.start();
    recorder.start();
    loopd::osc::Endpoint from;
    from.kind = loopd::osc::Endpoint::Kind::Udp;
    auto send = [&](const std::vector<char>& p) { controller.handlePacket(p.data(), p.size(), from); };
    TempDir dir;
    auto l = sine(220.0, 0.05, 48000, 48000.0), r = sine(330.0, 0.05, 48000, 48000.0);
    writeWav(dir.file("a.wav"), {l, r}, 48000);
    send(msg("/b_allocRead", 1, dir.file("a.wav").c_str()));
    send(msg("/b_allocRead", 2, dir.file("a.wav").c_str()));
    for (int g = 0; g < 4; ++g) send(msg("/g_new", 10 + g, 1, 0));
    for (int i = 0; i < 32; ++i)
        send(msg("/s_new", "player", 100 + i, 1, 10 + i % 4, "buf", 1 + i % 2, "loop", 1, "rate", i % 2 ? 1.01f : 1.0f, "gain", 0.1f));
    driver->start(engine);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    // Up to three 10 s windows, until one has no xrun (see the top of the file for what is asserted).
    EngineStats st{};
    uint64_t xruns = 0;
    long allocs = 0, frees = 0, locks = 0;
    for (int attempt = 1; attempt <= 3; ++attempt) {
        const EngineStats s0 = engine.stats(true); // the peaks start again
        const uint64_t xrunsBefore = s0.xruns;
        const int64_t framesBefore = engine.sampleTime();
        resetCounters();
        const auto t0 = std::chrono::steady_clock::now();
        int tick = 0;
        while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10)) {
            for (int i = 0; i < 32; ++i) send(msg("/n_set", 100 + i, "gain", 0.05f + 0.001f * static_cast<float>((tick + i) % 50)));
            send(msg("/n_ramp", 100 + tick % 32, "rate", 0.95f + 0.005f * static_cast<float>(tick % 20), 0.2f));
            send(msg("/g_queryTree", 0));
            controller.pollReplies();
            ++tick;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        st = engine.stats(true);
        xruns = st.xruns - xrunsBefore;
        allocs += g_allocs.load(); frees += g_frees.load(); locks += g_locks.load();
        const double window = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double meanLoad = 100.0 * (st.busySeconds - s0.busySeconds) / window;
        std::printf("jack attempt %d: %d Hz, period %d, %lld frames, mean load %.1f%%, peak block %.1f%% (own CPU %.1f%%), "
                    "blocks over budget %llu, xruns %llu\n",
                    attempt, static_cast<int>(driver->sampleRate()), driver->periodFrames(),
                    static_cast<long long>(st.sampleTime - framesBefore), meanLoad, st.cpuPeak, st.cpuPeakOwn,
                    static_cast<unsigned long long>(st.overBudgetBlocks - s0.overBudgetBlocks), static_cast<unsigned long long>(xruns));
        EXPECT_GT(st.sampleTime - framesBefore, static_cast<int64_t>(driver->sampleRate() * 9.5));
        EXPECT_LT(meanLoad, 50.0) << "window " << attempt;
        if (xruns == 0) break;
    }
    driver->stop();
    worker.stop();
    controller.pollReplies();
    recorder.stop();
    if (xruns > 0) std::printf("xruns in every window (see the top of the file)\n");
    EXPECT_EQ(st.droppedCommands, 0u);
    EXPECT_EQ(allocs, 0);
    EXPECT_EQ(frees, 0);
    EXPECT_EQ(locks, 0);
    EXPECT_EQ(fails.load(), 0);
}

// How many voices of `method` one core of this machine stretches in real time (thread CPU time
// of 2 s of output at the ratios of the test's tempo ramp). 0 for varispeed (no stretcher).
double voicesPerCore(const char* method) {
    const auto m = stretch::methodFromName(method);
    auto st = m ? stretch::Stretcher::create(*m, 2, 48000.0, 4096, 0.9, 1.0) : nullptr;
    if (!st) return 0.0;
    st->prime(0.9, 1.0);
    const auto x = sine(220.0, 0.3, 48000, 48000.0);
    std::vector<float> fl(4096), fr(4096), ol(256), orr(256);
    const float* in[2] = {fl.data(), fr.data()};
    float* out[2] = {ol.data(), orr.data()};
    size_t pos = 0;
    auto seconds = [] {
        timespec t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
    };
    const double t0 = seconds();
    for (int block = 0; block < 2 * 48000 / 256; ++block) {
        st->setTimeRatio(block % 150 < 75 ? 0.9 : 1.15); // the ramp's extremes, changing as it does
        for (int written = 0; written < 256;) {
            if (const int a = st->available(); a > 0) {
                written += st->retrieve(out, std::min(a, 256 - written));
                continue;
            }
            const int want = st->inputWanted();
            for (int k = 0; k < want; ++k, ++pos) fl[static_cast<size_t>(k)] = fr[static_cast<size_t>(k)] = x[pos % x.size()];
            st->feed(in, want);
        }
    }
    return 2.0 / std::max(1e-6, seconds() - t0);
}

// The acceptance test of the render-ahead stretch worker. Stretching on the audio thread:
// 8 rb2 followers averaged 44 % of the budget with bursts of 450 % of a 64-frame block (a Rubber
// Band hop of all eight at once), 1-11 xruns per 20 s. With the worker (StretchWorker): about 1 %
// on average, peaks 1-5 %. This shared 2-core VM has xruns of its own: by hand (session 3), the
// same 20 s window with 8 varispeed followers (LOOPD_JACK_METHOD=rate, peak block 0.6 %) had one
// xrun in 1 of 6 windows, the rb2 window in 2 of 7; never a stretch underrun. A clean-clone CI run
// then had one window with 5 xruns and 64 stretch underruns (a stall of the whole machine: the audio
// thread's own block peaked at 2.5 % of its budget) and a clean third window. So: in every window no
// allocation, a mean load under half the time, no stretch underrun without an xrun (the worker must not fall behind by itself). Windows (20 s, after 2 s of
// warm-up) run until one has no xrun and no underrun, at most three; xruns are printed, not
// asserted (see the top of the file): asserted are the allocations and the mean load.
// Eight followers, or as many as fill half of the stretch thread's core: on a 2-core VM one rb2
// voice costs about 11 % of a core (bench: stretchCost/rb2, 9 players per core), so eight kept
// the one stretch thread 90 % busy and any other process tipped it into underruns without an
// xrun (a clean-clone CI run: 266 in one window). The test is about the worker keeping up when
// there is time to, not about this machine's speed (the bench measures that).
TEST(RtSafety, EightStretchedFollowersOnJackThroughATempoRampKeepUp) {
    if (!std::getenv("LOOPD_JACK")) GTEST_SKIP() << "set LOOPD_JACK=1 with a JACK server running (scripts/jack-dummy start)";
    mlockall(MCL_CURRENT | MCL_FUTURE);
    // LOOPD_JACK_METHOD=rate: the same run without stretchers (a baseline for the machine's own xruns).
    const char* method = std::getenv("LOOPD_JACK_METHOD") ? std::getenv("LOOPD_JACK_METHOD") : "rb2";
    DriverOptions d;
    d.name = "jack";
    d.periodFrames = 256;
    std::unique_ptr<Driver> driver = openDriver(d);
    EngineConfig cfg;
    cfg.sampleRate = driver->sampleRate();
    cfg.stretchAhead = true; // as the server runs: stretchers on the stretch worker
    Engine engine(cfg);
    StretchWorker stretchWorker;
    Worker worker;
    Recorder recorder(cfg.sampleRate, false);
    PathPolicy paths;
    const ControllerOptions copts;
    Controller controller(engine, worker, recorder, paths, copts);
    controller.setStretchWorker(&stretchWorker);
    std::atomic<int> fails{0};
    controller.setSender([&](const loopd::osc::Endpoint&, const char* data, size_t size) {
        ::osc::ReceivedMessage m(::osc::ReceivedPacket(data, static_cast<::osc::osc_bundle_element_size_t>(size)));
        if (std::string(m.AddressPattern()) == "/fail") fails++;
        return true;
    });
    worker.start();
    recorder.start();
    stretchWorker.start();
    loopd::osc::Endpoint from;
    from.kind = loopd::osc::Endpoint::Kind::Udp;
    auto send = [&](const std::vector<char>& p) { controller.handlePacket(p.data(), p.size(), from); };
    TempDir dir;
    writeWav(dir.file("a.wav"), {sine(220.0, 0.05, 96000, 48000.0), sine(330.0, 0.05, 96000, 48000.0)}, 48000);
    send(msg("/b_allocRead", 1, dir.file("a.wav").c_str()));
    const double perCore = voicesPerCore(method);
    const int voices = perCore > 0.0 ? std::clamp(static_cast<int>(0.5 * perCore), 2, 8) : 8;
    std::printf("one %s voice costs %.1f %% of a core here: %d followers\n", method, perCore > 0.0 ? 100.0 / perCore : 0.0, voices);
    for (int i = 0; i < voices; ++i)
        send(msg("/s_new", "player", 100 + i, 1, 0, "buf", 1, "loop", 1, "follow", 1, "stretch", method, "gain", 0.1f, "start", i * 4000));
    driver->start(engine);
    std::this_thread::sleep_for(std::chrono::seconds(2)); // the pre-rolls and the workers' first passes
    EngineStats st{};
    uint64_t xruns = 0;
    uint64_t underruns = 0;
    bool clean = false;
    for (int attempt = 1; attempt <= 3 && !clean; ++attempt) {
        const EngineStats s0 = engine.stats(true); // the peaks start again
        const uint64_t before = s0.xruns;
        resetCounters();
        const auto t0 = std::chrono::steady_clock::now();
        int tick = 0;
        while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
            // A ramp up and down every 4 s, as a movement controller would make.
            if (tick % 80 == 0) send(msg("/tempo", tick % 160 == 0 ? 135.0f : 105.0f, 3.5f));
            controller.pollReplies();
            ++tick;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        st = engine.stats(true);
        xruns = st.xruns - before;
        underruns = st.stretchUnderruns - s0.stretchUnderruns;
        const double meanLoad = 100.0 * (st.busySeconds - s0.busySeconds) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("jack stretch attempt %d: %d %s followers, mean load %.1f%%, peak block %.1f%% (own CPU %.1f%%), blocks over budget %llu, "
                    "xruns %llu, stretch underruns %llu, allocs %ld\n",
                    attempt, voices, method, meanLoad, st.cpuPeak, st.cpuPeakOwn, static_cast<unsigned long long>(st.overBudgetBlocks - s0.overBudgetBlocks),
                    static_cast<unsigned long long>(xruns), static_cast<unsigned long long>(underruns), g_allocs.load());
        // Underruns with xruns: the machine stalled (a CI run had 64 underruns and 5 xruns in one
        // window, then two clean ones). Underruns without an xrun: the worker fell behind by itself.
        EXPECT_TRUE(underruns == 0 || xruns > 0) << "window " << attempt << ": " << underruns << " stretch underruns without an xrun";
        EXPECT_LT(meanLoad, 50.0) << "window " << attempt;
        EXPECT_EQ(g_allocs.load(), 0) << "window " << attempt;
        clean = xruns == 0 && underruns == 0;
    }
    driver->stop();
    worker.stop();
    controller.pollReplies();
    stretchWorker.stop();
    recorder.stop();
    if (!clean) std::printf("no window of three without an xrun or underrun (every underrun with an xrun: the host's)\n");
    EXPECT_EQ(g_frees.load(), 0);
    EXPECT_EQ(g_locks.load(), 0);
    EXPECT_EQ(fails.load(), 0);
}
