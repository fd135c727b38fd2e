#pragma once
// Render-ahead time-stretching: Rubber Band works in bursts (a whole analysis hop at a
// time), so stretchers run on a worker thread, ahead of the audio thread, through two lock-free
// rings per voice. The audio thread reads the source buffer (as every player does) and pushes
// those frames into `input`; the worker alone drives the stretcher and writes into `output`; the
// audio thread pulls from `output`. Offline (nrt, tests) the audio thread steps the voice itself,
// so renders stay deterministic.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "server/rt/SampleRing.h"
#include "server/rt/SpscQueue.h"
#include "stretch/Stretcher.h"

namespace loopd {

struct StretchVoice {
    static constexpr size_t kRingFrames = 16384;
    // [control] Allocates the rings and scratch.
    StretchVoice(std::unique_ptr<stretch::Stretcher> s);

    // [worker, or audio when synchronous] Prime when asked, then move input through the stretcher
    // into `output` as far as the rings allow. Never allocates.
    void step() noexcept;
    // [worker] The same in steps, for a scheduler that interleaves voices: begin() primes when
    // asked and hands the current ratios over (false: the voice has not started); chunk() moves
    // one hop in or out of the stretcher (false: nothing to do until the rings change);
    // flushAnnounced() publishes what was handed over.
    bool begin() noexcept;
    bool chunk() noexcept;
    void flushAnnounced() noexcept;
    // [worker] Smaller goes first: the output frames left before the audio thread runs dry.
    double urgency() const noexcept;

    std::unique_ptr<stretch::Stretcher> stretcher;
    SampleRing input{kRingFrames, 2};
    SampleRing output{kRingFrames, 2};
    std::atomic<double> timeRatio{1.0};    // written by the audio thread, read by the worker
    std::atomic<double> pitchScale{1.0};
    std::atomic<uint32_t> primeRequest{0}; // the audio thread bumps it when playback starts
    std::atomic<int> startDelay{0};
    std::atomic<int64_t> holdFrames{0};
    std::atomic<double> burstSeconds{0.0};   // worker: its longest recent pass (decays 1 % a pass)
    std::atomic<bool> playing{false};        // audio: its output sounds (an underrun would be heard)
    double passSeconds = 0.0;                // worker: time spent on it in the current pass

    // What the stretcher was given, for the audio thread to know where its output stands in the
    // source: each chunk handed to the stretcher becomes `out` output frames of material read at
    // `speed` (0: padding after a one-shot's end), at the ratio in force when it was handed over
    // (frames waiting in `input` have no ratio yet: the audio thread may still change it).
    struct Segment { double out; double speed; uint32_t generation; };
    SpscQueue<Segment> segments{1024};       // worker → audio
    std::atomic<int64_t> realPushed{0};      // audio: real (non-padding) frames put into `input`
    std::atomic<int64_t> realFed{0};         // worker: of those, handed to the stretcher

private:
    void announce(double out, double speed) noexcept;
    Segment pending_{0.0, -1.0, 0};          // worker: merged until the speed changes
    int64_t realFed_ = 0;                    // real frames announced
    int64_t realGiven_ = 0, inputGiven_ = 0;  // handed to the stretcher
    struct Held { int64_t endInput; int real; int pad; };
    static constexpr int kMaxHeld = 256;
    Held held_[kMaxHeld] = {};
    int heldHead_ = 0, heldCount_ = 0;
    int64_t holdFrames_ = 0;
    uint32_t primed_ = 0;  // worker side
    int dropLeft_ = 0;
    std::vector<float> inter_, feedL_, feedR_, outL_, outR_;
};

// A pool of stretch threads. Each voice belongs to one thread (the one with the fewest voices
// when it was added), so the threads never contend: one Rubber Band R3 player costs about a tenth
// of a core, and a single thread would cap a server at that many whatever its cores.
class StretchWorker {
public:
    StretchWorker() = default;
    ~StretchWorker() { stop(); }
    StretchWorker(const StretchWorker&) = delete;
    StretchWorker& operator=(const StretchWorker&) = delete;

    // [control] Start `threads` threads (0: one per core but one, at least one).
    void start(int threads = 0);
    void stop();                         // [control]
    void add(StretchVoice* v);           // [control] before the player is inserted
    void remove(StretchVoice* v);        // [control] after it was unlinked; waits for its thread
    // [worker] One pass over the voices, earliest deadline first (the voice closest to running
    // dry gets the next hop). A test that stopped the threads calls it itself, between blocks, to
    // play a worker keeping up at a chosen pace, deterministically.
    void stepAll();
    int threads() const noexcept { return static_cast<int>(lanes_.size()); }
    // Voices per thread: how the load is spread (tests).
    std::vector<int> voicesPerThread();

private:
    struct Lane {
        std::mutex mutex;                // control <-> this thread only; the audio thread never takes it
        std::vector<StretchVoice*> voices;
        std::vector<std::pair<double, StretchVoice*>> active; // scratch of stepVoices (capacity kept)
        std::thread thread;
    };
    static constexpr int kNice = -10;    // the stretch threads' priority, where permitted
    void run(Lane& lane);
    static void stepLane(Lane& lane);
    // One pass over `voices`, earliest deadline first; `active` is scratch.
    static void stepVoices(const std::vector<StretchVoice*>& voices, std::vector<std::pair<double, StretchVoice*>>& active);
    std::mutex lanesMutex_;              // control: the lane list while threads start and stop
    std::vector<std::unique_ptr<Lane>> lanes_;
    std::vector<StretchVoice*> parked_;  // voices added while stopped (tests step them via stepAll)
    std::vector<std::pair<double, StretchVoice*>> parkedActive_;
    std::atomic<bool> running_{false};
};

} // namespace loopd
