#pragma once
// The bindings the audio thread acts on itself: SooperLooper bindings of loop commands (`note`,
// `susnote`, `down`, `up`, `upforce`, `hit` of record, overdub, mute, …) — the pads and foot
// switches — compiled by the control thread into a table of ready engine commands (one per
// loop the binding addresses), so that a pad hit becomes the loop's command in the block it
// arrived in, with no round trip through the control thread. SooperLooper's hold rule (a press
// held 0.5 s or more releases the mode again on `up`) is kept here, in samples. Everything else
// (`set` bindings, globals, loopd's /midi_osc bindings, learn) stays on the control thread.
//
// Threads: built on [control], handed to the engine by cmd::MidiPads, read and written (hold
// state, toggles) only by [audio] from then on, handed back through the hand-back lane.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "server/engine/Commands.h"
#include "server/midi/Bindings.h"

namespace loopd::midi {

struct MidiPad {
    int key = 0;                 // status byte (kind | channel) << 8 | param, as BindingTable keys it
    Binding binding;             // for actionFor (strings only read on the audio thread)
    float toggle = 0.0f;
    bool sustainable = false;    // its command releases on a long press's `up` (SooperLooper's SUS)
    static constexpr int kMaxTargets = 16;
    struct Target {
        cmd::Unit unit{};        // the loop's command, ready to run
        int64_t downAt = 0;
        bool held = false;
    };
    Target targets[kMaxTargets];
    int numTargets = 0;
};

struct MidiPadTable {
    std::vector<MidiPad> pads;   // sorted by key
    // [audio] The pads of one event (first, count).
    std::pair<MidiPad*, int> find(int key) noexcept {
        auto lo = std::lower_bound(pads.begin(), pads.end(), key, [](const MidiPad& p, int k) { return p.key < k; });
        int n = 0;
        for (auto it = lo; it != pads.end() && it->key == key; ++it) ++n;
        return {n ? &*lo : nullptr, n};
    }
};

// Whether a binding is one the audio thread takes (a loop command of a loop or of all loops).
inline bool isPadBinding(const Binding& b) noexcept {
    const bool press = b.command == "note" || b.command == "susnote" || b.command == "down" || b.command == "up" ||
                       b.command == "upforce" || b.command == "hit";
    return press && b.control != "solo" && b.control != "scratch" && b.instance >= -1 && (b.type == "n" || b.type == "on" ||
                                                                                          b.type == "off" || b.type == "cc" || b.type == "pc");
}

} // namespace loopd::midi
