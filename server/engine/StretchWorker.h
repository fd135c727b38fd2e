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
#include <condition_variable>
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

    // Load shedding (a stretch thread that cannot keep up with its voices): the worker asks the
    // voice's player to play at varispeed (shedRequest); the player answers once it does (shed),
    // and from then on the worker leaves the voice alone, until it withdraws the request and the
    // player, having re-primed the voice where its varispeed stands, clears `shed`. Only a player
    // can do without its stretcher (sheddable); a looper's pitch shifter cannot.
    bool sheddable = false;                  // control, before add()
    int32_t nodeId = -1;                     // control, before add(): for the log and /notify
    std::atomic<bool> shedRequest{false};    // worker → audio
    std::atomic<bool> shed{false};           // audio → worker
    std::atomic<int64_t> inputSkip{0};       // audio: stale frames at the front of `input` at a re-prime
    std::atomic<uint64_t> underruns{0};      // audio: blocks in which it ran dry
    uint64_t underrunsSeen = 0;              // worker: underruns at the last load window
    double windowSeconds = 0.0;              // worker: time spent on it in the current load window
    double load = 0.0;                       // worker: its share of a core in the last window it ran

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
    std::vector<float> inter_;               // interleaved, 2 x maxFeed: ring <-> stretcher
};

// When an overloaded stretch thread sheds a player (it plays at varispeed instead: the pitch then
// follows the tempo, and no gaps) and when it takes one back, decided once a second per thread:
// shed the newest playing player when voices ran dry while the thread spent most of a core (it
// cannot keep up: the machine cannot carry the scene, and bursts of underruns, a player starved
// for seconds, are the worst outcome), twice as many as last time when the last shed was not
// enough (a scene far beyond the machine settles in a few seconds, not one player a window) but
// never more than half of those still stretched;
// take the oldest shed player back after a calm spell when the thread would stay well under a
// core with it. A thread that is merely starved by others (its voices ran dry but it used little
// of a core) sheds nothing: shedding would not help it.
struct ShedPolicy {
    static constexpr double kWindow = 1.0;        // seconds per decision
    static constexpr double kShedAbove = 0.8;     // share of a core the thread spent
    static constexpr double kRestoreBelow = 0.6;  // its share with the voice back (estimated)
    static constexpr double kCalm = 10.0;         // seconds without an underrun before one comes back
    static constexpr int kSettle = 1;             // windows after a change before the next decision
    enum class Action { None, Shed, Restore };
    // busy: the thread's CPU time over the window; underruns: blocks its playing voices ran dry;
    // restoreCost: the share of a core the oldest shed voice took when it last ran (< 0: none is
    // shed). Shed: `amount` players, the newest.
    Action decide(double busy, uint64_t underruns, double restoreCost) noexcept;
    double calm = 0.0;
    int settle = 0;
    int amount = 0;       // players to shed (Action::Shed)
    int streak = 0;       // consecutive sheds without a calm window between them
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
    // [control] The voice of node `nodeId` (null: none), for tests.
    StretchVoice* voiceOf(int32_t nodeId);
    // Load shedding (ShedPolicy), reported to the control thread.
    struct ShedEvent { int32_t nodeId; bool shed; double busy; uint64_t underruns; };
    std::vector<ShedEvent> takeShedEvents();                       // [control]
    int shedVoices() const noexcept { return shedNow_.load(std::memory_order_relaxed); }

private:
    struct Lane {
        std::mutex mutex;                // control <-> this thread only; the audio thread never takes it
        std::condition_variable wake;    // a voice came (or stop): a lane without voices sleeps on it
        std::vector<StretchVoice*> voices;
        std::vector<std::pair<double, StretchVoice*>> active; // scratch of stepVoices (capacity kept)
        std::thread thread;
        int index = 0;
        ShedPolicy policy;               // its thread only
        int shedCount = 0;               // its thread only: its voices shed now
    };
    // [worker] Once per ShedPolicy::kWindow: measure the lane and shed or restore one voice.
    void balance(Lane& lane, double windowSeconds, double cpuSeconds);
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
    std::atomic<int> shedNow_{0};
    std::mutex eventsMutex_;             // worker threads -> control
    std::vector<ShedEvent> events_;
};

} // namespace loopd
