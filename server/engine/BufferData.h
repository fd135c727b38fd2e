#pragma once
// Sample memory of one buffer: planar float frames at the server's rate. Created and destroyed
// on non-real-time threads; the audio thread only reads it through the engine's buffer table.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "server/engine/MemoryBudget.h"

namespace loopd {

// A number no other BufferData of this process had (analysis results name the data they belong to).
inline uint64_t nextBufferSerial() noexcept {
    static std::atomic<uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
}

struct BufferData {
    const uint64_t serial = nextBufferSerial();
    // What /b_analyze found (written once by the worker while this data is in the table; read by
    // players with `bpm -1` or `align 1` on the audio thread): the material's tempo (0: none)
    // and its first downbeat (frames; -1: none).
    std::atomic<float> analysedBpm{0.0f};
    std::atomic<int64_t> analysedDownbeat{-1};
    int64_t numFrames = 0;
    int numChannels = 0;
    double sampleRate = 0.0;      // the server rate the data was converted to
    double sourceRate = 0.0;      // the file's own rate (reported by /b_query as "rate")
    std::string path;             // where it came from ("" for /b_alloc)
    std::unique_ptr<float[]> samples; // numChannels * numFrames, channel-major
    MemoryLease lease;            // its share of the memory budget, returned when it is freed

    float* channel(int c) noexcept { return samples.get() + static_cast<int64_t>(c) * numFrames; }
    const float* channel(int c) const noexcept { return samples.get() + static_cast<int64_t>(c) * numFrames; }

    // [control|worker] Allocates zeroed memory, counted against `budget` when one is given
    // (throws BudgetError, naming `what`, when it does not fit).
    static std::unique_ptr<BufferData> zeros(int64_t numFrames, int numChannels, double sampleRate,
                                             MemoryBudget* budget = nullptr, const std::string& what = "a buffer");
};

inline std::unique_ptr<BufferData> BufferData::zeros(int64_t frames, int channels, double rate, MemoryBudget* budget,
                                                     const std::string& what) {
    MemoryLease lease;
    if (budget) lease = budget->reserve(frames * channels * static_cast<int64_t>(sizeof(float)), what);
    auto b = std::make_unique<BufferData>();
    b->lease = std::move(lease);
    b->numFrames = frames;
    b->numChannels = channels;
    b->sampleRate = rate;
    b->sourceRate = rate;
    b->samples = std::make_unique<float[]>(static_cast<size_t>(frames * channels)); // value-initialised
    return b;
}

} // namespace loopd
