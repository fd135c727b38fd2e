// Live analysis of the input (LiveAnalysis.h).
#include "server/analysis/LiveAnalysis.h"

#include <pthread.h>

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>

#include "server/engine/Engine.h"

namespace loopd {

LiveAnalysis::LiveAnalysis(Engine& engine, double bpmLow, double bpmHigh)
    : engine_(engine), sampleRate_(engine.config().sampleRate), lo_(bpmLow), hi_(bpmHigh) {
    buffer_.resize(static_cast<size_t>(sampleRate_)); // up to a second per read
    reset(0);
}

LiveAnalysis::~LiveAnalysis() {
    stop();
}

void LiveAnalysis::reset(int64_t at) {
    tempo_ = std::make_unique<TempoTracker>(sampleRate_, lo_, hi_, kTempoWindowSeconds + 2.0);
    onsets_ = std::make_unique<OnsetDetector>(sampleRate_);
    recentOnsets_.clear();
    streamStart_ = position_ = at;
    nextTempoAt_ = at + static_cast<int64_t>(kTempoWindowSeconds * sampleRate_);
}

void LiveAnalysis::step() {
    SampleRing& ring = engine_.analysisRing();
    if (const uint64_t dropped = engine_.analysisDropped(); dropped != droppedSeen_) {
        // The ring overflowed (this thread stood still for seconds): start over where it stands.
        droppedSeen_ = dropped;
        const size_t stale = ring.readableFrames();
        for (size_t n = stale; n > 0;) n -= ring.read(buffer_.data(), std::min(n, buffer_.size()));
        reset(engine_.sampleTime());
        return;
    }
    for (;;) {
        const size_t n = ring.read(buffer_.data(), buffer_.size());
        if (n == 0) break;
        analyse(buffer_.data(), static_cast<int>(n));
    }
}

void LiveAnalysis::analyse(const float* x, int n) {
    std::vector<Event> found;
    tempo_->push(x, n);
    hits_.clear();
    onsets_->push(x, n, hits_);
    for (const OnsetDetector::Onset& o : hits_) {
        const int64_t at = streamStart_ + o.sample;
        found.push_back(Event{Event::Kind::Onset, at, o.strength, 0.0, -1.0, false});
        recentOnsets_.push_back(at);
    }
    position_ += n;
    // The tempo of the last 8 s, every half second of input; reported when it changed.
    while (position_ >= nextTempoAt_) {
        const TempoTracker::Estimate e = tempo_->estimate(kTempoWindowSeconds);
        const bool changed = std::fabs(e.bpm - lastBpm_) >= 0.05 || std::fabs(e.confidence - lastConfidence_) >= 0.1;
        if (changed) {
            lastBpm_ = e.bpm;
            lastConfidence_ = e.confidence;
        }
        while (!recentOnsets_.empty() && recentOnsets_.front() < position_ - static_cast<int64_t>(kTempoWindowSeconds * sampleRate_))
            recentOnsets_.pop_front();
        // The tracker's beats are within a step of the onsets, biased by the material (a low
        // kick: 7-9 ms late): the phase goes onto the onsets near the grid's last 16 beats.
        const double beat = e.phaseSample < 0.0 ? -1.0
                                                : TempoTracker::snapToOnsets(static_cast<double>(streamStart_) + e.phaseSample, e.beatPeriod,
                                                                             recentOnsets_, sampleRate_);
        found.push_back(Event{Event::Kind::Tempo, position_, e.bpm, e.confidence, beat, changed});
        nextTempoAt_ += static_cast<int64_t>(kTempoEverySeconds * sampleRate_);
    }
    if (found.empty()) return;
    std::lock_guard<std::mutex> lock(eventsMutex_);
    events_.insert(events_.end(), found.begin(), found.end());
    engine_.wakeControl();
}

void LiveAnalysis::start() {
    if (running_.exchange(true)) return;
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "loopd-analysis");
        // Below everything that makes sound (audio, stretch threads) and the control thread:
        // nothing waits for the analysis, and a late estimate only comes a little later.
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
        while (running_.load()) {
            step();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    });
}

void LiveAnalysis::stop() {
    if (!running_.exchange(false)) return;
    if (thread_.joinable()) thread_.join();
}

std::vector<LiveAnalysis::Event> LiveAnalysis::takeEvents() {
    std::lock_guard<std::mutex> lock(eventsMutex_);
    std::vector<Event> out;
    out.swap(events_);
    return out;
}

} // namespace loopd
