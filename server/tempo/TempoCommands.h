#pragma once
// The tempo module: the commands that set the one tempo clock every follower plays to —
// /tempo (step or ramp), /set_tempo, /set_meter, /dance/total_movement (the audience's movement
// mapped to a tempo, with its own rise and fall times) — and /print_clock, which logs every beat.
// The tempo sources still to come (analysis, MIDI clock, Link) belong here.
//
// Threads: control thread only.
#include "server/control/Module.h"

namespace loopd {

class TempoCommands final : public Module {
public:
    explicit TempoCommands(Controller& c); // registers the addresses
    void onBeat(const reply::Beat& b) override;

private:
    void hTempo(Msg&); void hSetTempo(Msg&); void hSetMeter(Msg&); void hPrintClock(Msg&); void hMovement(Msg&);
    bool printClock_ = false;
};

} // namespace loopd
