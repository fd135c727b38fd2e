#pragma once
// The memory budget (--max-memory-mb): one account of the large allocations clients can ask for
// (buffers, loops and their undo history, stretch voices, transient load buffers), so that no
// client can push the machine into the OOM killer. A request is checked before the memory is
// allocated; one that does not fit is refused with the figures, and nothing already held changes.
//
// A MemoryLease holds the bytes it reserved until it is destroyed; the objects that own the
// memory carry their lease (BufferData, Node), so the bytes come back when the object is freed —
// on a non-real-time thread, like the memory itself.
//
// Threads: [any] for every method (atomics only; reserve() builds its error text, so it is not
// for the audio thread, which never allocates anyway).
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

namespace loopd {

// Thrown by MemoryBudget::reserve: the reason, with the figures, for a /fail reply.
struct BudgetError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class MemoryBudget;

class MemoryLease {
public:
    MemoryLease() = default;
    MemoryLease(MemoryLease&& o) noexcept : budget_(std::exchange(o.budget_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    MemoryLease& operator=(MemoryLease&& o) noexcept {
        if (this != &o) {
            release();
            budget_ = std::exchange(o.budget_, nullptr);
            bytes_ = std::exchange(o.bytes_, 0);
        }
        return *this;
    }
    MemoryLease(const MemoryLease&) = delete;
    MemoryLease& operator=(const MemoryLease&) = delete;
    ~MemoryLease() { release(); }

    int64_t bytes() const noexcept { return bytes_; }
    inline void release() noexcept;

private:
    friend class MemoryBudget;
    MemoryLease(MemoryBudget* b, int64_t bytes) noexcept : budget_(b), bytes_(bytes) {}
    MemoryBudget* budget_ = nullptr;
    int64_t bytes_ = 0;
};

class MemoryBudget {
public:
    // limitBytes <= 0: no limit (the account is still kept).
    explicit MemoryBudget(int64_t limitBytes) noexcept : limit_(limitBytes) {}
    MemoryBudget(const MemoryBudget&) = delete;
    MemoryBudget& operator=(const MemoryBudget&) = delete;

    // [any] Reserve `bytes` for `what` ("buffer 7", "loop 3"); throws BudgetError when the
    // reservation would pass the limit.
    MemoryLease reserve(int64_t bytes, const std::string& what) {
        if (bytes <= 0) return {};
        int64_t used = used_.load(std::memory_order_relaxed);
        for (;;) {
            if (limit_ > 0 && used + bytes > limit_)
                throw BudgetError("not enough memory for " + what + ": it needs " + mb(bytes) + ", " + mb(used) +
                                  " of the " + mb(limit_) + " budget (--max-memory-mb) are in use");
            if (used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed)) break;
        }
        return MemoryLease(this, bytes);
    }
    // [any] Count memory that is held whatever the limit (the engine's own rings at startup).
    MemoryLease account(int64_t bytes) noexcept {
        if (bytes <= 0) return {};
        used_.fetch_add(bytes, std::memory_order_relaxed);
        return MemoryLease(this, bytes);
    }

    int64_t used() const noexcept { return used_.load(std::memory_order_relaxed); }
    int64_t limit() const noexcept { return limit_; }

    // [any] Half the machine's physical memory (the default budget).
    static int64_t halfOfPhysicalMemory() noexcept;
    static std::string mb(int64_t bytes) {
        const double m = static_cast<double>(bytes) / (1024.0 * 1024.0);
        char buf[32];
        std::snprintf(buf, sizeof buf, m < 10 ? "%.1f MB" : "%.0f MB", m);
        return buf;
    }

private:
    friend class MemoryLease;
    void give(int64_t bytes) noexcept { used_.fetch_sub(bytes, std::memory_order_relaxed); }
    const int64_t limit_;
    std::atomic<int64_t> used_{0};
};

inline void MemoryLease::release() noexcept {
    if (budget_) budget_->give(bytes_);
    budget_ = nullptr;
    bytes_ = 0;
}

inline int64_t MemoryBudget::halfOfPhysicalMemory() noexcept {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long size = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? static_cast<int64_t>(pages) * size / 2 : int64_t(1) << 30;
}

} // namespace loopd
