#pragma once
// The control thread's "now", for the few commands whose meaning depends on when they arrive
// (Crowdstream's untimed deck starts become timetags; tap tempo; SooperLooper's long presses).
// Live it is the wall clock. A replay (--replay) sets it, before each packet it hands over, to the
// time the live server received that packet (the session log keeps both clocks), so the replayed
// command means what the live one meant.
//
// Threads: [control] only (the replay has one thread).
#include <chrono>
#include <cstdint>

#include "server/engine/Commands.h"

namespace loopd::control_clock {

struct State {
    bool held = false;
    uint64_t ntp = 0;
    double steady = 0.0;
};
inline State& state() noexcept {
    static State s;
    return s;
}

// NTP 32.32 (seconds since 1900), as an OSC timetag.
inline uint64_t ntp() noexcept { return state().held ? state().ntp : ntpNow(); }
// Seconds on the monotonic clock (intervals only).
inline double steadySeconds() noexcept {
    if (state().held) return state().steady;
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// While a packet is handled the clock stands still at the time it arrived (every handler of one
// bundle sees one "now", which is also the time the session log keeps): hold() at that time,
// holdAt() at a logged time (a replay), release() after the packet.
inline void holdAt(uint64_t ntpTime, double steady) noexcept {
    state().held = true;
    state().ntp = ntpTime;
    state().steady = steady;
}
inline void hold() noexcept {
    state().held = false;
    holdAt(ntp(), steadySeconds());
}
inline void release() noexcept { state().held = false; }

} // namespace loopd::control_clock
