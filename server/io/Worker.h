#pragma once
// The asynchronous command thread (scsynth's NRT thread): file I/O and allocation for buffer
// commands, run in arrival order so that /sync means "everything before has finished".
// In offline rendering the jobs run synchronously, which keeps renders deterministic.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace loopd {

class Worker {
public:
    explicit Worker(bool synchronous = false) : synchronous_(synchronous) {}
    ~Worker() { stop(); }
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void start();                                // [control]
    void stop();                                 // [control] finishes queued jobs first
    void post(std::function<void()> job);        // [control]
    size_t pending() const;                      // [any]
    bool synchronous() const noexcept { return synchronous_; }

private:
    void run();
    const bool synchronous_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stopping_ = false;
    std::thread thread_;
};

} // namespace loopd
