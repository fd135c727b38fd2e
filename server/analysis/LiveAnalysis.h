#pragma once
// Live analysis of the input: onsets (OnsetDetector: aubio's, drum hits within 2.8 ms of their
// sample; it does not fire on pure tone clicks) and tempo
// (TempoTracker: qm-dsp over the last 8 s, estimated every half second of input) of what the
// engine copies into its analysis ring. The
// audio thread only copies; everything here runs on the analysis thread (real time: a thread of
// its own, `start`) or on the caller's (offline renders: `step` after every block, so that the
// results are the same on every run).
//
// Threads: step() on one thread at a time (the analysis thread once started); takeEvents() on
// any other (the control thread), under a mutex that only these two take.
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "server/analysis/OnsetDetector.h"
#include "server/analysis/TempoTracker.h"

namespace loopd {

class Engine;

class LiveAnalysis {
public:
    struct Event {
        enum class Kind : uint8_t { Onset, Tempo } kind;
        int64_t sampleTime; // the onset's sample; a tempo's: the end of the window it was made from
        double value;       // onset strength (aubio's detection value), or BPM (0: no tempo heard)
        double confidence;  // tempo only
        double beatSample = -1.0; // tempo only: absolute sample of the last beat on the tempo line (-1: none)
        bool changed = false;     // tempo only: the estimate moved (0.05 BPM or 0.1 of confidence) since the last
    };
    static constexpr double kTempoEverySeconds = 0.5;
    static constexpr double kTempoWindowSeconds = 8.0;

    // After kRestAfterSeconds of digital silence (every sample 0, as an unplugged or absent
    // input gives) the trackers hold nothing but silence: the analysis rests (repeats the last
    // estimate, which silence does not change) until a sample is not 0, then takes up again
    // with trackers fed the same silence afresh. A stream silent from its start (no input, or
    // one nobody plays into) rests from its first estimate. Results are the same as without resting (the
    // test compares them); an idle server's analysis thread does not run FFTs on zeros.
    static constexpr double kRestAfterSeconds = kTempoWindowSeconds + 7.0; // memory 10.5 s + a 4 s grid period
    LiveAnalysis(Engine& engine, double bpmLow, double bpmHigh, bool restInSilence = true);
    // Frames every LiveAnalysis in the process rested through (a diagnostic for tests).
    static uint64_t restedFrames() noexcept { return restedFrames_.load(std::memory_order_relaxed); }
    ~LiveAnalysis();
    LiveAnalysis(const LiveAnalysis&) = delete;
    LiveAnalysis& operator=(const LiveAnalysis&) = delete;

    // Read what the ring holds and analyse it.
    void step();
    // Real time: step on a thread of its own every few milliseconds until stop().
    void start();
    void stop();
    // What was found since the last call, in order.
    std::vector<Event> takeEvents();

private:
    void reset(int64_t at); // start over at absolute sample `at` (first use, or after a drop)
    void analyse(const float* x, int n);
    void publish(const std::vector<Event>& found);
    int64_t trackerMemory() const noexcept;  // samples the trackers remember, and a little more
    int64_t restartPeriod() const noexcept;  // restarts keep every grid: a multiple of all of them

    Engine& engine_;
    double sampleRate_, lo_, hi_;
    std::unique_ptr<TempoTracker> tempo_;
    std::unique_ptr<OnsetDetector> onsets_;
    std::vector<OnsetDetector::Onset> hits_; // the onsets of one read
    std::deque<int64_t> recentOnsets_; // absolute samples of the onsets of the last tempo window (the phase snaps to them)
    int64_t streamStart_ = 0;       // absolute sample the onset detector's count starts at
    std::vector<float> buffer_;     // what was read from the ring
    int64_t position_ = 0;          // absolute sample of the next frame to read
    int64_t nextTempoAt_ = 0;       // absolute sample of the next tempo estimate
    double lastBpm_ = 0.0, lastConfidence_ = 0.0;
    bool restInSilence_ = true;
    static inline std::atomic<uint64_t> restedFrames_{0};
    int64_t silentRun_ = 0;         // samples of digital silence up to position_
    std::atomic<bool> resting_{false}; // (only this thread writes it)
    bool quiet_ = false;            // refeeding silence after a rest: no events
    Event lastTempo_{Event::Kind::Tempo, -1, 0.0, 0.0, -1.0, false};
    int64_t silenceStart_ = 0;      // absolute sample the current silence began at
    bool heardSound_ = false;       // a sample since streamStart_ was not 0
    uint64_t droppedSeen_ = 0;
    std::mutex eventsMutex_;
    std::vector<Event> events_;
    std::thread thread_;
    std::atomic<bool> running_{false};
};

} // namespace loopd
