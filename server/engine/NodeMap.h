#pragma once
// Fixed-capacity hash map from node id to node, for the audio thread: open addressing with
// linear probing and backward-shift deletion; never allocates after construction.
#include <cstdint>
#include <memory>

namespace loopd {

class Node;

class NodeMap {
public:
    // [control] capacity = maximum number of nodes; the table is twice that, rounded to a power of 2.
    explicit NodeMap(int capacity);

    Node* find(int32_t id) const noexcept;                 // [audio]
    bool insert(int32_t id, Node* node) noexcept;          // [audio] false: full or present
    void erase(int32_t id) noexcept;                       // [audio]
    int size() const noexcept { return size_; }
    int capacity() const noexcept { return capacity_; }

    template <typename F>
    void forEach(F&& f) const noexcept {                   // [audio]
        for (uint32_t i = 0; i <= mask_; ++i)
            if (slots_[i].node) f(slots_[i].node);
    }

private:
    struct Slot { int32_t id; Node* node; };
    uint32_t home(int32_t id) const noexcept {
        return (static_cast<uint32_t>(id) * 2654435761u) & mask_;
    }
    std::unique_ptr<Slot[]> slots_;
    uint32_t mask_ = 0;
    int capacity_ = 0;
    int size_ = 0;
};

inline NodeMap::NodeMap(int capacity) : capacity_(capacity) {
    uint32_t n = 16;
    while (n < static_cast<uint32_t>(capacity) * 2u) n <<= 1;
    slots_ = std::make_unique<Slot[]>(n);
    for (uint32_t i = 0; i < n; ++i) slots_[i] = {0, nullptr};
    mask_ = n - 1;
}

inline Node* NodeMap::find(int32_t id) const noexcept {
    for (uint32_t i = home(id);; i = (i + 1) & mask_) {
        if (!slots_[i].node) return nullptr;
        if (slots_[i].id == id) return slots_[i].node;
    }
}

inline bool NodeMap::insert(int32_t id, Node* node) noexcept {
    if (size_ >= capacity_) return false;
    uint32_t i = home(id);
    for (; slots_[i].node; i = (i + 1) & mask_)
        if (slots_[i].id == id) return false;
    slots_[i] = {id, node};
    ++size_;
    return true;
}

inline void NodeMap::erase(int32_t id) noexcept {
    uint32_t i = home(id);
    for (;; i = (i + 1) & mask_) {
        if (!slots_[i].node) return;
        if (slots_[i].id == id) break;
    }
    // Backward-shift deletion keeps every probe chain unbroken.
    uint32_t j = i;
    for (;;) {
        slots_[i].node = nullptr;
        for (;;) {
            j = (j + 1) & mask_;
            if (!slots_[j].node) { --size_; return; }
            const uint32_t k = home(slots_[j].id);
            // Move j into i unless k lies cyclically in (i, j].
            const bool inRange = i <= j ? (i < k && k <= j) : (i < k || k <= j);
            if (!inRange) break;
        }
        slots_[i] = slots_[j];
        i = j;
    }
}

} // namespace loopd
