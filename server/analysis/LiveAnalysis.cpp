// Live analysis of the input (LiveAnalysis.h).
#include "server/analysis/LiveAnalysis.h"

#include <pthread.h>

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <numeric>

#include "server/engine/Engine.h"

namespace loopd {

LiveAnalysis::LiveAnalysis(Engine& engine, double bpmLow, double bpmHigh, bool restInSilence)
    : engine_(engine), sampleRate_(engine.config().sampleRate), lo_(bpmLow), hi_(bpmHigh), restInSilence_(restInSilence) {
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
    resting_ = false;
    silentRun_ = 0;
    silenceStart_ = at;
    heardSound_ = false;
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
    int firstSound = 0;
    while (firstSound < n && x[firstSound] == 0.0f) ++firstSound;
    if (resting_) {
        const int64_t halfSecond = static_cast<int64_t>(kTempoEverySeconds * sampleRate_);
        if (firstSound == n) {
            // Still silent: the estimates silence gives, on their grid, without the trackers.
            std::vector<Event> found;
            position_ += n;
            silentRun_ += n;
            restedFrames_.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
            while (position_ >= nextTempoAt_) {
                Event e = lastTempo_;
                e.sampleTime = nextTempoAt_;
                e.changed = false;
                found.push_back(e);
                nextTempoAt_ += halfSecond;
            }
            publish(found);
            return;
        }
        // Sound again: fresh trackers, started on the estimates' grid at least a tracker's
        // memory before now, fed the silence up to here without reporting anything (the same
        // state the trackers had had, as silence wipes everything out of them).
        resting_ = false;
        const int64_t now = position_;
        // The new start keeps the estimates' half-second grid and the trackers' hop grids
        // (512 and 128 samples) where they were.
        const int64_t period = restartPeriod();
        // (Not before the stream's start: a stream silent from its start restarts there and is
        // fed all of its silence, as it was.)
        const int64_t steps = std::max<int64_t>(0, (now - trackerMemory() - streamStart_) / period);
        const double bpm = lastBpm_, confidence = lastConfidence_;
        const bool heard = heardSound_;
        reset(streamStart_ + steps * period);
        heardSound_ = heard;
        lastBpm_ = bpm;
        lastConfidence_ = confidence;
        quiet_ = true;
        std::vector<float> zeros(buffer_.size(), 0.0f); // (x may be buffer_ itself)
        while (position_ < now) {
            const int k = static_cast<int>(std::min<int64_t>(now - position_, static_cast<int64_t>(zeros.size())));
            analyse(zeros.data(), k);
        }
        quiet_ = false;
        silentRun_ = now - silenceStart_;
    }
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
        lastTempo_ = found.back();
        nextTempoAt_ += static_cast<int64_t>(kTempoEverySeconds * sampleRate_);
    }
    // The silence so far (what the trackers hold of it) and whether to rest from here.
    if (firstSound < n) {
        heardSound_ = true;
        int lastSound = n - 1;
        while (x[lastSound] == 0.0f) --lastSound;
        silentRun_ = n - 1 - lastSound;
        silenceStart_ = position_ - silentRun_;
    } else {
        if (silentRun_ == 0) silenceStart_ = position_ - n;
        silentRun_ += n;
    }
    // Rest once an estimate has been made from nothing but silence (its window of 8 s and the
    // tracker's whole memory inside the silence): every later one is that one again. A stream
    // silent since its start rests after its first estimate: the trackers began empty, and
    // silence leaves them so.
    const bool estimated = nextTempoAt_ > streamStart_ + static_cast<int64_t>(kTempoWindowSeconds * sampleRate_);
    const bool silentSinceStart = !heardSound_ && estimated;
    const bool silentLongEnough = silentRun_ >= static_cast<int64_t>(kRestAfterSeconds * sampleRate_) &&
                                  lastTempo_.sampleTime - trackerMemory() - restartPeriod() >= silenceStart_;
    if (restInSilence_ && !quiet_ && (silentSinceStart || silentLongEnough)) resting_ = true;
    if (quiet_) return;
    publish(found);
}

int64_t LiveAnalysis::trackerMemory() const noexcept {
    return static_cast<int64_t>((kTempoWindowSeconds + 2.5) * sampleRate_); // the tracker keeps 10 s
}

int64_t LiveAnalysis::restartPeriod() const noexcept {
    const auto halfSecond = static_cast<int64_t>(kTempoEverySeconds * sampleRate_);
    return std::lcm(halfSecond, std::lcm<int64_t>(TempoTracker::kStep, OnsetDetector::kHop)); // 4 s at 48 kHz
}

void LiveAnalysis::publish(const std::vector<Event>& found) {
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
            // Resting (silence), a look every 200 ms is enough: the ring holds 4 s, and the
            // first sound after the rest is analysed in one catch-up step (its events keep their
            // sample times; they reach clients up to 200 ms later, once).
            std::this_thread::sleep_for(std::chrono::milliseconds(resting_.load(std::memory_order_relaxed) ? 200 : 5));
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
