#pragma once
// MIDI in the control thread: what the driver's MIDI input brought (Engine::popMidiIn) goes to
// SooperLooper's learn and bindings. Clock, feedback and loopd's own bindings to come (issue 15).
//
// Threads: [control].
#include <cstdint>

#include "server/control/Module.h"
#include "server/midi/MidiParser.h"

namespace loopd {

class SooperLooper;

class MidiModule final : public Module {
public:
    MidiModule(Controller& c, SooperLooper& sooperLooper);
    void poll() override;

private:
    SooperLooper& sooperLooper_;
    uint64_t received_ = 0;
};

} // namespace loopd
