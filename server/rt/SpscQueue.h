#pragma once
// Bounded single-producer single-consumer lock-free queue.
//
// Threads: exactly one producer thread calls tryPush(), exactly one consumer thread calls
// tryPop()/front(). Neither blocks nor allocates after construction. A full queue makes tryPush()
// return false: the caller counts and reports it, nothing is dropped silently.
#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>

namespace loopd {

template <typename T>
class SpscQueue {
    static_assert(std::is_nothrow_move_assignable_v<T>, "queue elements must move without throwing");

public:
    // [control] Allocates capacity slots once.
    explicit SpscQueue(size_t capacity)
        : capacity_(capacity + 1), slots_(std::make_unique<T[]>(capacity + 1)) {}

    SpscQueue(const SpscQueue&) = delete;
    SpscQueue& operator=(const SpscQueue&) = delete;

    // [producer] Never blocks or allocates. False when full.
    bool tryPush(T&& value) noexcept {
        const size_t tail = tail_.load(std::memory_order_relaxed);
        const size_t next = tail + 1 == capacity_ ? 0 : tail + 1;
        if (next == headCache_) {
            headCache_ = head_.load(std::memory_order_acquire);
            if (next == headCache_) return false;
        }
        slots_[tail] = std::move(value);
        tail_.store(next, std::memory_order_release);
        return true;
    }
    bool tryPush(const T& value) noexcept { T copy = value; return tryPush(std::move(copy)); }

    // [consumer] Never blocks or allocates. False when empty.
    bool tryPop(T& out) noexcept {
        const size_t head = head_.load(std::memory_order_relaxed);
        if (head == tailCache_) {
            tailCache_ = tail_.load(std::memory_order_acquire);
            if (head == tailCache_) return false;
        }
        out = std::move(slots_[head]);
        head_.store(head + 1 == capacity_ ? 0 : head + 1, std::memory_order_release);
        return true;
    }

    // [any] Approximate number of queued elements.
    size_t sizeApprox() const noexcept {
        const size_t h = head_.load(std::memory_order_acquire);
        const size_t t = tail_.load(std::memory_order_acquire);
        return t >= h ? t - h : t + capacity_ - h;
    }
    size_t capacity() const noexcept { return capacity_ - 1; }

private:
    static constexpr size_t kLine = 64;
    const size_t capacity_;
    std::unique_ptr<T[]> slots_;
    alignas(kLine) std::atomic<size_t> head_{0};
    alignas(kLine) size_t tailCache_ = 0; // consumer's copy of tail_
    alignas(kLine) std::atomic<size_t> tail_{0};
    alignas(kLine) size_t headCache_ = 0; // producer's copy of head_
};

} // namespace loopd
