#include "server/engine/StretchWorker.h"

#include <pthread.h>

#include "dsp/Denormals.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include <ctime>
#include <sys/resource.h>
#include <unistd.h>

namespace loopd {

StretchVoice::StretchVoice(std::unique_ptr<stretch::Stretcher> s) : stretcher(std::move(s)) {
    const auto n = static_cast<size_t>(stretcher->maxFeed());
    inter_.assign(2 * n, 0.0f);
}

void StretchVoice::step() noexcept {
    if (begin())
        for (int guard = 0; guard < 64 && chunk(); ++guard) {}
    flushAnnounced();
}

bool StretchVoice::begin() noexcept {
    const uint32_t want = primeRequest.load(std::memory_order_acquire);
    if (want == 0) return false; // not started yet
    if (want != primed_) {
        stretcher->prime(timeRatio.load(std::memory_order_relaxed), pitchScale.load(std::memory_order_relaxed));
        dropLeft_ = stretcher->startDelay();
        startDelay.store(dropLeft_, std::memory_order_relaxed);
        primed_ = want;
        // A voice re-primed after it was shed: what its player had put in before is stale.
        for (int64_t skip = inputSkip.exchange(0, std::memory_order_acq_rel); skip > 0;) {
            const size_t k = input.read(inter_.data(), static_cast<size_t>(std::min<int64_t>(skip, static_cast<int64_t>(inter_.size() / 2))));
            if (k == 0) break;
            skip -= static_cast<int64_t>(k);
        }
        pending_ = Segment{0.0, -1.0, want};
        realFed_ = 0;
        realFed.store(0, std::memory_order_release);
        realGiven_ = 0;
        inputGiven_ = 0;
        heldCount_ = 0;
        // How much input the engine sits on before a new ratio reaches it, as a share of its
        // start delay. Measured on the beat-grid tests (two tempo scripts with steps on and
        // between beats and ramps; worst onset error over shares 0 .. 0.9 with the predictive,
        // forecasting lock): R3 0.75 (0.5: 2.8 ms, 0.6: 2.1, 0.75: 0.96, 0.9: 2.2); R2 0
        // (1.75 ms; 0.1 .. 0.9: 1.9 .. 3.5); SoundTouch 0 (0.1 .. 0.5: 7.9 .. 8.2 ms offline).
        const double share = stretcher->method() == stretch::Method::Rb3 ? 0.75 : 0.0;
        holdFrames_ = static_cast<int64_t>(static_cast<double>(dropLeft_) * share);
        holdFrames.store(holdFrames_, std::memory_order_relaxed);
    }
    stretcher->setTimeRatio(timeRatio.load(std::memory_order_relaxed));
    stretcher->setPitchScale(pitchScale.load(std::memory_order_relaxed));
    return true;
}

double StretchVoice::urgency() const noexcept {
    // Output frames left before the audio thread runs dry; a voice that is not sounding yet (its
    // pre-roll) can wait a little longer than one that would underrun.
    const double ready = static_cast<double>(output.readableFrames());
    return playing.load(std::memory_order_relaxed) ? ready : ready + 2048.0;
}

bool StretchVoice::chunk() noexcept {
    // What was handed over is announced before the output it becomes is visible: the audio
    // thread places every output frame in the source by the announcements (a pass over many
    // voices must not hold them back until its end).
    flushAnnounced();
    const int maxFeed = stretcher->maxFeed();
    for (;;) {
        const int avail = stretcher->available();
        if (avail > 0) {
            const int room = static_cast<int>(output.writableFrames());
            if (room == 0 && dropLeft_ == 0) return false; // the audio thread is far behind: wait
            if (dropLeft_ > 0) { // the start delay: not output
                dropLeft_ -= stretcher->retrieveInterleaved(inter_.data(), std::min({avail, maxFeed, dropLeft_}));
                continue;
            }
            // Straight into the ring (up to its wrap; the rest on the next chunk).
            float* at = nullptr;
            const int run = static_cast<int>(output.writeRegion(at));
            const int got = stretcher->retrieveInterleaved(at, std::min({avail, maxFeed, run}));
            output.commitWrite(static_cast<size_t>(got));
            return got > 0;
        }
        const int need = stretcher->inputWanted();
        if (static_cast<int>(input.readableFrames()) < need) return false; // wait for more source
        // The hop straight from the ring when it does not straddle the wrap (a copy when it does:
        // one call, so that every engine sees the same process() sizes either way).
        const float* hop = nullptr;
        const bool straight = static_cast<int>(input.readRegion(hop)) >= need;
        if (!straight) {
            input.read(inter_.data(), static_cast<size_t>(need));
            hop = inter_.data();
        }
        // Real frames come first, padding only after a one-shot's last frame.
        const double ratio = timeRatio.load(std::memory_order_relaxed);
        const int real = static_cast<int>(std::clamp<int64_t>(realPushed.load(std::memory_order_acquire) - realGiven_, 0, need));
        realGiven_ += real;
        inputGiven_ += need;
        // The stretcher holds about holdFrames_ of input before it analyses them: a chunk gets
        // the ratio in force when that much newer input has gone in after it.
        held_[(heldHead_ + heldCount_++) % kMaxHeld] = Held{inputGiven_, real, need - real};
        while (heldCount_ > 0 && (inputGiven_ - held_[heldHead_].endInput >= holdFrames_ || heldCount_ == kMaxHeld)) {
            const Held& c = held_[heldHead_];
            realFed_ += c.real;
            announce(c.real * ratio, 1.0 / ratio);
            announce(c.pad * ratio, 0.0);
            heldHead_ = (heldHead_ + 1) % kMaxHeld;
            --heldCount_;
        }
        realFed.store(realFed_, std::memory_order_release);
        stretcher->feedInterleaved(hop, need);
        if (straight) input.commitRead(static_cast<size_t>(need));
        flushAnnounced();
        return true;
    }
}

void StretchVoice::announce(double out, double speed) noexcept {
    if (out <= 0.0) return;
    if (pending_.speed != speed && pending_.out > 0.0) flushAnnounced();
    if (pending_.out > 0.0 && pending_.speed != speed) {
        // The queue is full (the audio thread is far behind): merge, keeping the source total.
        const double src = pending_.out * pending_.speed + out * speed;
        pending_.out += out;
        pending_.speed = src / pending_.out;
        return;
    }
    pending_.speed = speed;
    pending_.out += out;
    pending_.generation = primed_;
}

void StretchVoice::flushAnnounced() noexcept {
    if (pending_.out <= 0.0) return;
    if (segments.tryPush(pending_)) pending_.out = 0.0;
}

void StretchWorker::start(int threads) {
    std::lock_guard<std::mutex> guard(lanesMutex_);
    if (running_.exchange(true)) return;
    if (threads <= 0) threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) - 1);
    std::vector<StretchVoice*> voices = std::move(parked_);
    parked_.clear();
    for (auto& lane : lanes_) voices.insert(voices.end(), lane->voices.begin(), lane->voices.end());
    lanes_.clear();
    for (int i = 0; i < threads; ++i) {
        lanes_.push_back(std::make_unique<Lane>());
        lanes_.back()->index = i;
    }
    for (size_t i = 0; i < voices.size(); ++i) lanes_[i % lanes_.size()]->voices.push_back(voices[i]);
    for (auto& lane : lanes_) {
        Lane* l = lane.get();
        l->thread = std::thread([this, l] { pthread_setname_np(pthread_self(), "loopd-stretch"); run(*l); });
    }
}

void StretchWorker::stop() {
    std::lock_guard<std::mutex> guard(lanesMutex_);
    if (!running_.exchange(false)) return;
    for (auto& lane : lanes_) {
        { std::lock_guard<std::mutex> lock(lane->mutex); } // a lane between its check and its wait sees running_ now
        lane->wake.notify_all();
    }
    for (auto& lane : lanes_)
        if (lane->thread.joinable()) lane->thread.join();
    // The voices stay, parked: a test may go on stepping them itself.
    for (auto& lane : lanes_) parked_.insert(parked_.end(), lane->voices.begin(), lane->voices.end());
    lanes_.clear();
    shedNow_.store(0, std::memory_order_relaxed);
}

void StretchWorker::add(StretchVoice* v) {
    std::lock_guard<std::mutex> guard(lanesMutex_);
    if (lanes_.empty()) { parked_.push_back(v); return; }
    Lane* least = lanes_.front().get();
    for (auto& lane : lanes_) {
        std::lock_guard<std::mutex> lock(lane->mutex);
        if (lane->voices.size() < least->voices.size()) least = lane.get();
    }
    {
        std::lock_guard<std::mutex> lock(least->mutex);
        least->voices.push_back(v);
    }
    least->wake.notify_one();
}

void StretchWorker::remove(StretchVoice* v) {
    std::lock_guard<std::mutex> guard(lanesMutex_);
    parked_.erase(std::remove(parked_.begin(), parked_.end(), v), parked_.end());
    for (auto& lane : lanes_) {
        std::lock_guard<std::mutex> lock(lane->mutex); // its thread holds it while it steps: no step is under way
        lane->voices.erase(std::remove(lane->voices.begin(), lane->voices.end(), v), lane->voices.end());
    }
}

StretchVoice* StretchWorker::voiceOf(int32_t nodeId) {
    std::lock_guard<std::mutex> guard(lanesMutex_);
    for (StretchVoice* v : parked_)
        if (v->nodeId == nodeId) return v;
    for (auto& lane : lanes_) {
        std::lock_guard<std::mutex> lock(lane->mutex);
        for (StretchVoice* v : lane->voices)
            if (v->nodeId == nodeId) return v;
    }
    return nullptr;
}

std::vector<int> StretchWorker::voicesPerThread() {
    std::lock_guard<std::mutex> guard(lanesMutex_);
    std::vector<int> n;
    for (auto& lane : lanes_) {
        std::lock_guard<std::mutex> lock(lane->mutex);
        n.push_back(static_cast<int>(lane->voices.size()));
    }
    return n;
}

void StretchWorker::stepVoices(const std::vector<StretchVoice*>& voices, std::vector<std::pair<double, StretchVoice*>>& active) {
    // Earliest deadline first, one chunk (a hop in or out of the stretcher) at a time: the voice
    // closest to running dry goes next, so that one voice with a lot to do (a start, a catch-up)
    // does not make the others wait for all of it. A voice that has nothing to do now (waiting
    // for source) is asked again after any other made progress: the audio thread keeps feeding
    // it while the pass goes on.
    active.clear();
    for (StretchVoice* v : voices) {
        v->passSeconds = 0.0;
        // A shed voice is its player's alone until the player hands it back.
        if (v->shed.load(std::memory_order_acquire)) continue;
        if (v->begin()) active.push_back({0.0, v});
    }
    for (size_t guard = 0; guard < 64 * voices.size(); ++guard) {
        // The keys are read once per round: the audio thread drains the rings meanwhile, and a
        // sort whose comparisons change under it may run off the end of the array.
        for (auto& [key, v] : active) key = v->urgency();
        std::sort(active.begin(), active.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        bool progress = false;
        for (auto& [key, v] : active) {
            const auto t0 = std::chrono::steady_clock::now();
            progress = v->chunk();
            v->passSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (progress) break;
        }
        if (!progress) break;
    }
    for (StretchVoice* v : voices) {
        v->flushAnnounced();
        // Its cost this pass: the player keeps a few of these in flight (its fill floor).
        const double burst = v->burstSeconds.load(std::memory_order_relaxed);
        v->burstSeconds.store(std::max(v->passSeconds, burst * 0.99), std::memory_order_relaxed);
        v->windowSeconds += v->passSeconds;
    }
}

void StretchWorker::stepLane(Lane& lane) {
    std::lock_guard<std::mutex> lock(lane.mutex);
    stepVoices(lane.voices, lane.active);
}

void StretchWorker::stepAll() {
    std::lock_guard<std::mutex> guard(lanesMutex_);
    stepVoices(parked_, parkedActive_);
    for (auto& lane : lanes_) stepLane(*lane);
}

void StretchWorker::run(Lane& lane) {
    // Above ordinary threads, below the real-time ones: it works ahead of the audio thread by
    // some tens of milliseconds only, so it must not wait behind a busy control thread, a file
    // load or another process (SCHED_BATCH, as before, was woken late enough on a loaded 2-core
    // machine to let players run dry); the audio and driver threads still preempt it. Its work
    // is bounded by the fill targets. A higher priority needs root or CAP_SYS_NICE; without
    // them it stays at the default.
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kNice);
    // Denormals flushed, as on the audio thread: a fading tail through the engines' filters
    // would otherwise slow them down by orders of magnitude just when the worker must keep up.
    const dsp::ScopedNoDenormals noDenormals;
    auto cpuNow = [] {
        timespec ts{};
        ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
    };
    auto windowStart = std::chrono::steady_clock::now();
    double cpuStart = cpuNow();
    while (running_.load()) {
        stepLane(lane);
        const auto now = std::chrono::steady_clock::now();
        const double wall = std::chrono::duration<double>(now - windowStart).count();
        if (wall >= ShedPolicy::kWindow) {
            const double cpu = cpuNow();
            balance(lane, wall, cpu - cpuStart);
            windowStart = now;
            cpuStart = cpu;
        }
        // With voices, look every 2 ms: the rings hold about 40 ms ahead (2048 frames at 48 kHz,
        // adaptive). Without, sleep until add() brings one (or stop): an idle server's stretch
        // threads cost nothing. The shed window is measured afresh after such a sleep.
        std::unique_lock<std::mutex> lock(lane.mutex);
        if (lane.voices.empty()) {
            lane.wake.wait(lock, [&] { return !running_.load() || !lane.voices.empty(); });
            windowStart = std::chrono::steady_clock::now();
            cpuStart = cpuNow();
            continue;
        }
        lock.unlock();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

ShedPolicy::Action ShedPolicy::decide(double busy, uint64_t underruns, double restoreCost) noexcept {
    calm = underruns > 0 ? 0.0 : calm + kWindow;
    if (settle > 0) { --settle; return Action::None; }
    if (underruns > 0 && busy >= kShedAbove) {
        settle = kSettle;
        amount = 1 << std::min(streak++, 4);
        return Action::Shed;
    }
    if (underruns == 0) streak = 0;
    if (restoreCost >= 0.0 && calm >= kCalm && busy + restoreCost < kRestoreBelow) {
        settle = kSettle;
        calm = 0.0;
        return Action::Restore;
    }
    return Action::None;
}

void StretchWorker::balance(Lane& lane, double windowSeconds, double cpuSeconds) {
    std::lock_guard<std::mutex> lock(lane.mutex);
    uint64_t underruns = 0;
    StretchVoice* oldestShed = nullptr;
    int shed = 0;
    for (StretchVoice* v : lane.voices) {
        const uint64_t u = v->underruns.load(std::memory_order_relaxed);
        const bool isShed = v->shedRequest.load(std::memory_order_relaxed);
        if (!isShed) {
            underruns += u - v->underrunsSeen;
            v->load = v->windowSeconds / windowSeconds;
        } else {
            ++shed;
            if (!oldestShed && v->shed.load(std::memory_order_acquire)) oldestShed = v;
        }
        v->underrunsSeen = u;
        v->windowSeconds = 0.0;
    }
    const double busy = cpuSeconds / windowSeconds;
    const ShedPolicy::Action a = lane.policy.decide(busy, underruns, oldestShed ? oldestShed->load : -1.0);
    auto report = [&](const StretchVoice* v, bool isShed) {
        std::lock_guard<std::mutex> events(eventsMutex_);
        if (events_.size() < 1024) events_.push_back({v->nodeId, isShed, busy, underruns});
    };
    if (a == ShedPolicy::Action::Shed) {
        // The newest players first (the voices are in the order they were added), sounding or
        // still waiting for their first stretched output.
        // At most half of those still stretched at once: twice as many as last time may
        // overshoot (R3 here: 7 of 12 shed and still overloaded, 8 more would be all of them).
        int candidates = 0;
        for (StretchVoice* v : lane.voices) candidates += v->sheddable && !v->shedRequest.load(std::memory_order_relaxed);
        int left = std::min(lane.policy.amount, std::max(1, candidates / 2));
        for (auto it = lane.voices.rbegin(); it != lane.voices.rend() && left > 0; ++it) {
            StretchVoice* v = *it;
            if (!v->sheddable || v->shedRequest.load(std::memory_order_relaxed)) continue;
            v->shedRequest.store(true, std::memory_order_release);
            ++shed;
            --left;
            spdlog::warn("stretch thread {} overloaded ({:.0f}% of a core, {} underruns in {:.1f} s): node {} plays at varispeed "
                         "until the load falls", lane.index, 100.0 * busy, underruns, windowSeconds, v->nodeId);
            report(v, true);
        }
    } else if (a == ShedPolicy::Action::Restore && oldestShed) {
        oldestShed->shedRequest.store(false, std::memory_order_release);
        --shed;
        spdlog::info("stretch thread {} at {:.0f}% of a core: node {} is time-stretched again (it took about {:.0f}%)",
                     lane.index, 100.0 * busy, oldestShed->nodeId, 100.0 * oldestShed->load);
        report(oldestShed, false);
    }
    // The total over the lanes: each lane adds its change.
    shedNow_.fetch_add(shed - lane.shedCount, std::memory_order_relaxed);
    lane.shedCount = shed;
}

std::vector<StretchWorker::ShedEvent> StretchWorker::takeShedEvents() {
    std::lock_guard<std::mutex> lock(eventsMutex_);
    std::vector<ShedEvent> out;
    out.swap(events_);
    return out;
}

} // namespace loopd
