#pragma once
// A clock shared with other programs (Ableton Link: net/LinkSession.h) as the engine sees it:
// once a driver period the engine says where the period's first output frame is on its
// timeline; once a block it says what its clock does (tempo, beats at the block's first sample)
// and is told what the shared clock wants (a tempo to take, a beat position, a phase error to
// slide away). The engine has no network code; the peer keeps its own.
//
// Threads: period() and block() on the audio thread only ([audio]: no allocation, no locks).
#include <cstdint>

namespace loopd {

struct ClockPeerBlock {
    int64_t sample = 0;      // the block's first sample on the engine's timeline
    double bpm = 120.0;      // the engine clock's tempo and beat position at that sample
    double beats = 0.0;
    int quantum = 4;         // beats per bar
    bool lead = true;        // false: only follow (tempo source link); true: commit own tempo changes
};

struct ClockPeerAnswer {
    double bpm = 0.0;        // > 0: take this tempo (a peer changed the session's)
    bool setPosition = false; // jump to `position` beats (joining a session, or far off its phase)
    double position = 0.0;
    double phaseError = 0.0; // beats the engine is behind the session's phase (slide it away)
};

class ClockPeer {
public:
    virtual ~ClockPeer() = default;
    // [audio] This period's first output frame is timeline sample `outStart`; it reaches the
    // listener `latencyFrames` later.
    virtual void period(int64_t outStart, double sampleRate, int latencyFrames) noexcept = 0;
    // [audio] Once a block, before the clock moves.
    virtual ClockPeerAnswer block(const ClockPeerBlock& b) noexcept = 0;
};

} // namespace loopd
