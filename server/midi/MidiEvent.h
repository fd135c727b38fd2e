#pragma once
// One short MIDI message (channel, system common or real-time; SysEx is not carried) at the
// timeline sample it arrived at or is to leave at.
#include <cstdint>

namespace loopd::midi {

struct MidiEvent {
    int64_t sample = 0;  // timeline sample (Engine::sampleTime's clock); for output -1 = at once
    uint8_t bytes[3] = {0, 0, 0};
    uint8_t size = 0;    // 1..3
    uint8_t flags = 0;   // input: kPadsDone when the audio thread acted on it (midi/MidiPads.h)
    static constexpr uint8_t kPadsDone = 1;
};

} // namespace loopd::midi
