#include "server/nodes/looper/LoopMemory.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace loopd {

LoopMemory::LoopMemory(int channels, int64_t maxFrames, int poolPages, int maxGenerations)
    : channels_(std::max(1, channels)), maxFrames_(std::max<int64_t>(kPageFrames, maxFrames)),
      pageFloats_(static_cast<size_t>(kPageFrames) * static_cast<size_t>(std::max(1, channels))),
      maxGens_(std::max(2, maxGenerations)) {
    const size_t slots = static_cast<size_t>((maxFrames_ + kPageFrames - 1) / kPageFrames);
    poolPages = std::max(poolPages, static_cast<int>(slots) + 1);
    pool_.assign(static_cast<size_t>(poolPages) * pageFloats_, 0.0f);
    free_.resize(static_cast<size_t>(poolPages));
    for (int p = poolPages - 1; p >= 0; --p) free_[static_cast<size_t>(freeCount_++)] = p;
    table_.assign(slots, -1);
    stamp_.assign(slots, 0);
    before_.assign(slots, -1);
    entries_.resize(static_cast<size_t>(poolPages) + 2 * slots);
    gens_.resize(static_cast<size_t>(maxGens_));
}

const float* LoopMemory::frameBefore(int64_t f) const noexcept {
    if (f < 0 || f >= maxFrames_) return nullptr;
    const auto s = static_cast<size_t>(f / kPageFrames);
    const int32_t p = open_ && numGens_ > 0 && stamp_[s] == gen(numGens_ - 1).serial ? before_[s] : table_[s];
    return p < 0 ? nullptr : page(p) + (f % kPageFrames) * channels_;
}

int32_t LoopMemory::takePage() noexcept {
    while (freeCount_ == 0)
        if (!forgetOldest()) return -1;
    return free_[static_cast<size_t>(--freeCount_)];
}

bool LoopMemory::pushEntry(int32_t slot, int32_t p) noexcept {
    while (entryEnd_ - entryBegin_ >= entries_.size())
        if (!forgetOldest()) return false;
    entry(entryEnd_++) = Entry{slot, p};
    ++gen(numGens_ - 1).numEntries;
    return true;
}

float* LoopMemory::writable(int64_t f) noexcept {
    if (f < 0 || f >= maxFrames_) return nullptr;
    if (!open_) beginGeneration(false);
    const auto s = static_cast<size_t>(f / kPageFrames);
    const size_t offset = static_cast<size_t>(f % kPageFrames) * static_cast<size_t>(channels_);
    const uint32_t serial = gen(numGens_ - 1).serial;
    if (stamp_[s] == serial && table_[s] >= 0) return page(table_[s]) + offset;
    const int32_t old = table_[s];
    const int32_t fresh = takePage(); // may forget old history; never the page now in the table
    if (fresh < 0) { outOfMemory_ = true; return nullptr; }
    if (stamp_[s] != serial) {
        // First touch in this generation: keep the old page for undo, write into a copy.
        if (!pushEntry(static_cast<int32_t>(s), old)) { givePage(fresh); outOfMemory_ = true; return nullptr; }
        before_[s] = old;
        stamp_[s] = serial;
        if (old >= 0) std::memcpy(page(fresh), page(old), pageFloats_ * sizeof(float));
        else std::memset(page(fresh), 0, pageFloats_ * sizeof(float));
    } else {
        // Emptied by a new recording in this generation: start from silence.
        std::memset(page(fresh), 0, pageFloats_ * sizeof(float));
    }
    table_[s] = fresh;
    return page(fresh) + offset;
}

void LoopMemory::beginGeneration(bool cleared) noexcept {
    forgetRedo();
    if (numGens_ > 0 && open_) {
        // An untouched step is not worth an undo level.
        const Generation& last = gen(numGens_ - 1);
        if (last.numEntries == 0 && !last.cleared && last.otherLength == length_) { --numGens_; applied_ = numGens_; }
    }
    if (numGens_ == maxGens_ && !forgetOldest()) {
        // Cannot happen with maxGens_ >= 2 (only the open generation is kept); stay safe.
        open_ = false;
        return;
    }
    Generation& g = gens_[static_cast<size_t>((firstGen_ + numGens_) % maxGens_)];
    g = Generation{length_, entryEnd_, 0, ++serial_, cleared};
    if (serial_ == 0) g.serial = ++serial_; // stamps start at 0: never reuse it
    ++numGens_;
    applied_ = numGens_;
    open_ = true;
    outOfMemory_ = false;
    if (cleared) {
        for (size_t s = 0; s < table_.size(); ++s) {
            if (table_[s] < 0) continue;
            if (!pushEntry(static_cast<int32_t>(s), table_[s])) break; // history full even when forgotten: keep the rest
            before_[s] = table_[s];
            stamp_[s] = g.serial;
            table_[s] = -1;
        }
        length_ = 0;
    }
}

bool LoopMemory::generationTouched() const noexcept {
    if (!open_ || numGens_ == 0) return false;
    const Generation& g = gen(numGens_ - 1);
    return g.numEntries > 0 || g.cleared || g.otherLength != length_;
}

void LoopMemory::swapGeneration(Generation& g) noexcept {
    for (uint32_t i = 0; i < g.numEntries; ++i) {
        Entry& e = entry(g.firstEntry + i);
        std::swap(table_[static_cast<size_t>(e.slot)], e.page);
    }
    std::swap(length_, g.otherLength);
}

bool LoopMemory::undo() noexcept {
    if (applied_ == 0) return false;
    swapGeneration(gen(applied_ - 1));
    --applied_;
    open_ = false;
    return true;
}

bool LoopMemory::redo() noexcept {
    if (applied_ == numGens_) return false;
    swapGeneration(gen(applied_));
    ++applied_;
    open_ = false;
    return true;
}

int LoopMemory::undoAll() noexcept {
    int n = 0;
    while (undo()) ++n;
    return n;
}

int LoopMemory::redoAll() noexcept {
    int n = 0;
    while (redo()) ++n;
    return n;
}

bool LoopMemory::forgetOldest() noexcept {
    // Never the newest (open) generation, never an undone one.
    if (numGens_ <= 1 || applied_ == 0) return false;
    Generation& g = gen(0);
    for (uint32_t i = 0; i < g.numEntries; ++i) givePage(entry(g.firstEntry + i).page);
    entryBegin_ = g.firstEntry + g.numEntries;
    firstGen_ = (firstGen_ + 1) % maxGens_;
    --numGens_;
    --applied_;
    return true;
}

void LoopMemory::forgetRedo() noexcept {
    while (numGens_ > applied_) {
        Generation& g = gen(numGens_ - 1);
        for (uint32_t i = 0; i < g.numEntries; ++i) givePage(entry(g.firstEntry + i).page);
        entryEnd_ = g.firstEntry;
        --numGens_;
    }
}

void LoopMemory::clear() noexcept {
    forgetRedo();
    while (numGens_ > 0) {
        Generation& g = gen(0);
        for (uint32_t i = 0; i < g.numEntries; ++i) givePage(entry(g.firstEntry + i).page);
        firstGen_ = (firstGen_ + 1) % maxGens_;
        --numGens_;
    }
    applied_ = 0;
    entryBegin_ = entryEnd_ = 0;
    for (int32_t& p : table_) { givePage(p); p = -1; }
    length_ = 0;
    open_ = false;
    outOfMemory_ = false;
}

} // namespace loopd
