#pragma once
// Live analysis of the input: its tempo (TempoTracker: qm-dsp over the last 8 s, estimated every
// half second of input) from what the engine copies into its analysis ring (onsets are still to
// come: aubio's detector missed tonal clicks in a first trial, see the issue notes). The
// audio thread only copies; everything here runs on the analysis thread (real time: a thread of
// its own, `start`) or on the caller's (offline renders: `step` after every block, so that the
// results are the same on every run).
//
// Threads: step() on one thread at a time (the analysis thread once started); takeEvents() on
// any other (the control thread), under a mutex that only these two take.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "server/analysis/TempoTracker.h"

namespace loopd {

class Engine;

class LiveAnalysis {
public:
    struct Event {          // a tempo estimate that differs from the one before
        int64_t sampleTime; // the sample the estimate was made at (the end of its window)
        double bpm;         // 0: no tempo heard
        double confidence;
    };
    static constexpr double kTempoEverySeconds = 0.5;
    static constexpr double kTempoWindowSeconds = 8.0;

    LiveAnalysis(Engine& engine, double bpmLow, double bpmHigh);
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

    Engine& engine_;
    double sampleRate_, lo_, hi_;
    std::unique_ptr<TempoTracker> tempo_;
    std::vector<float> buffer_;     // what was read from the ring
    int64_t position_ = 0;          // absolute sample of the next frame to read
    int64_t nextTempoAt_ = 0;       // absolute sample of the next tempo estimate
    double lastBpm_ = 0.0, lastConfidence_ = 0.0;
    uint64_t droppedSeen_ = 0;
    std::mutex eventsMutex_;
    std::vector<Event> events_;
    std::thread thread_;
    std::atomic<bool> running_{false};
};

} // namespace loopd
