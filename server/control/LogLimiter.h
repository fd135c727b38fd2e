#pragma once
// A token bucket for log lines that a client can provoke (every /fail is logged, as scsynth
// logs failures): bursts of up to `burst` lines pass, then `perSecond` lines a second, so that a
// flood of bad packets cannot fill the disk. The lines held back are counted and reported with
// the next line that passes.
//
// Threads: [any] (a mutex; never the audio thread, which does not log).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace loopd {

class LogLimiter {
public:
    LogLimiter(double burst, double perSecond) : burst_(burst), rate_(perSecond), tokens_(burst) {}

    // [any] Whether to log this line now; `heldBack` receives how many lines were held back
    // since the last one that passed (report it with this one).
    bool allow(uint64_t& heldBack) {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto now = std::chrono::steady_clock::now();
        if (started_) tokens_ = std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
        started_ = true;
        last_ = now;
        if (tokens_ < 1.0) { ++heldBack_; return false; }
        tokens_ -= 1.0;
        heldBack = heldBack_;
        heldBack_ = 0;
        return true;
    }

private:
    std::mutex mutex_;
    const double burst_, rate_;
    double tokens_;
    bool started_ = false;
    std::chrono::steady_clock::time_point last_;
    uint64_t heldBack_ = 0;
};

} // namespace loopd
