#pragma once
// A loop's audio, held in fixed-size pages, with page-granular undo and redo.
//
// The loop is a table of page slots (frame f lives in slot f / kPageFrames); a slot with no page
// reads as silence. Every edit belongs to a generation (one record, overdub, replace, ...): the
// first write to a slot in a generation copies that page into a fresh page from the pool and
// keeps the old one in the generation's entries (copy-on-write). Undo swaps the generation's
// pages (and its length) back in; redo swaps them again — both are O(pages touched) pointer
// swaps, never a copy, so they are exact and cheap enough for the audio thread. When the pool
// runs dry the oldest generation is forgotten to make room; when nothing is left to forget, a
// write fails (the looper stops recording and reports it).
//
// Threads: the constructor allocates everything [control]; every other method is [audio] (or
// any single thread that owns the loop) and never allocates.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace loopd {

class LoopMemory {
public:
    static constexpr int kPageFrames = 4096;

    // maxFrames: the longest loop; poolPages: pages for loop content and undo history together.
    LoopMemory(int channels, int64_t maxFrames, int poolPages, int maxGenerations = 64);
    LoopMemory(const LoopMemory&) = delete;
    LoopMemory& operator=(const LoopMemory&) = delete;

    int channels() const noexcept { return channels_; }
    int64_t maxFrames() const noexcept { return maxFrames_; }
    int64_t length() const noexcept { return length_; }
    // Length of the loop in the current generation (undo restores the previous one).
    void setLength(int64_t frames) noexcept { length_ = frames < 0 ? 0 : frames > maxFrames_ ? maxFrames_ : frames; }

    // One interleaved frame, or null when it lies in an empty slot (silence).
    const float* frame(int64_t f) const noexcept {
        if (f < 0 || f >= maxFrames_) return nullptr;
        const int32_t p = table_[static_cast<size_t>(f / kPageFrames)];
        return p < 0 ? nullptr : page(p) + (f % kPageFrames) * channels_;
    }
    // The frame as it was before the current generation touched it (insert reads it).
    const float* frameBefore(int64_t f) const noexcept;
    // A frame to write in the current generation (copy-on-write); null when memory ran out
    // (outOfMemory() then stays true until the next generation).
    float* writable(int64_t f) noexcept;

    // Start a new undo step. `cleared`: the loop starts empty (a new recording); the old content
    // stays in this generation for undo. Forgets whatever could still be redone.
    void beginGeneration(bool cleared) noexcept;
    // Whether the current generation changed anything (an empty one is dropped by the next begin).
    bool generationTouched() const noexcept;
    // The newest generation is still open and has changed nothing (undo skips it).
    bool openAndEmpty() const noexcept { return open_ && numGens_ > 0 && !generationTouched(); }
    bool undo() noexcept;
    bool redo() noexcept;
    int undoAll() noexcept;
    int redoAll() noexcept;
    int undoDepth() const noexcept { return applied_; }
    int redoDepth() const noexcept { return numGens_ - applied_; }
    // Empty the loop and forget all history.
    void clear() noexcept;

    int freePages() const noexcept { return freeCount_; }
    int64_t freeFrames() const noexcept { return static_cast<int64_t>(freeCount_) * kPageFrames; }
    bool outOfMemory() const noexcept { return outOfMemory_; }

private:
    struct Entry { int32_t slot; int32_t page; };
    struct Generation { int64_t otherLength; uint32_t firstEntry; uint32_t numEntries; uint32_t serial; bool cleared; };

    float* page(int32_t p) noexcept { return pool_.data() + static_cast<size_t>(p) * pageFloats_; }
    const float* page(int32_t p) const noexcept { return pool_.data() + static_cast<size_t>(p) * pageFloats_; }
    int32_t takePage() noexcept;              // -1 when none left even after forgetting history
    void givePage(int32_t p) noexcept { if (p >= 0) free_[static_cast<size_t>(freeCount_++)] = p; }
    bool pushEntry(int32_t slot, int32_t p) noexcept;
    void swapGeneration(Generation& g) noexcept;
    bool forgetOldest() noexcept;             // drop the oldest applied generation
    void forgetRedo() noexcept;               // drop every undone generation
    Generation& gen(int i) noexcept { return gens_[static_cast<size_t>((firstGen_ + i) % maxGens_)]; }
    const Generation& gen(int i) const noexcept { return gens_[static_cast<size_t>((firstGen_ + i) % maxGens_)]; }
    Entry& entry(uint32_t i) noexcept { return entries_[i % entries_.size()]; }
    const Entry& entry(uint32_t i) const noexcept { return entries_[i % entries_.size()]; }

    int channels_;
    int64_t maxFrames_;
    size_t pageFloats_;
    std::vector<float> pool_;
    std::vector<int32_t> free_;
    int freeCount_ = 0;
    std::vector<int32_t> table_;       // slot → page (-1: silence)
    std::vector<uint32_t> stamp_;      // slot → serial of the generation that last copied it
    std::vector<int32_t> before_;      // slot → its page before the current generation (if stamped)
    std::vector<Entry> entries_;       // ring, in generation order
    uint32_t entryBegin_ = 0, entryEnd_ = 0;
    std::vector<Generation> gens_;     // ring
    int maxGens_;
    int firstGen_ = 0, numGens_ = 0, applied_ = 0;
    uint32_t serial_ = 0;
    int64_t length_ = 0;
    bool open_ = false;                // writes go to the newest generation
    bool outOfMemory_ = false;
};

} // namespace loopd
