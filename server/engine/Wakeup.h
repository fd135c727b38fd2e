#pragma once
// Wakes the control thread from its sleep in poll(2): an eventfd it polls beside its sockets.
// The sleeper arms it before it looks for work; a producer (the audio thread, the worker, the
// analysis thread) posts after it queued something. Only the first post after an arm writes
// (one write(2), non-blocking: real-time safe, as scsynth's semaphore post to its NRT thread);
// later ones, and all while the sleeper is awake and disarmed, cost an atomic exchange.
//
// Ordering (the Dekker pattern): the producer queues, fences, then reads `armed`; the sleeper
// sets `armed`, fences, then drains every queue. One of the two sees the other: either the
// drain finds the item or the post writes the eventfd and the poll returns at once.
//
// Threads: arm/drain/fd [control]; post [any, audio included].
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>

namespace loopd {

class Wakeup {
public:
    Wakeup() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
        if (fd_ < 0) throw std::runtime_error("eventfd failed");
    }
    ~Wakeup() { ::close(fd_); }
    Wakeup(const Wakeup&) = delete;
    Wakeup& operator=(const Wakeup&) = delete;

    int fd() const noexcept { return fd_; }
    // [control] Before looking for work and sleeping.
    void arm() noexcept {
        armed_.store(true, std::memory_order_seq_cst);
        std::atomic_thread_fence(std::memory_order_seq_cst);
    }
    // [control] After the sleep: no more writes until the next arm; the counter emptied.
    void disarm() noexcept {
        armed_.store(false, std::memory_order_relaxed);
        uint64_t v;
        while (::read(fd_, &v, sizeof v) > 0) {
        }
    }
    // [any] After queueing something for the control thread.
    void post() noexcept {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (!armed_.load(std::memory_order_relaxed) || !armed_.exchange(false, std::memory_order_acq_rel)) return;
        const uint64_t one = 1;
        [[maybe_unused]] const ssize_t n = ::write(fd_, &one, sizeof one);
        posts_.fetch_add(1, std::memory_order_relaxed);
    }
    uint64_t posts() const noexcept { return posts_.load(std::memory_order_relaxed); }

private:
    int fd_;
    std::atomic<bool> armed_{false};
    std::atomic<uint64_t> posts_{0};
};

} // namespace loopd
