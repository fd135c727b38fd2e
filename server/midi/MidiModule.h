#pragma once
// MIDI in the control thread: what the driver's MIDI input brought (Engine::popMidiIn) goes to
// SooperLooper's learn and bindings, then to loopd's own bindings of any OSC command:
//   /midi_osc "ch type param" lo hi /address [args...]
//       type cc, n (note on; velocity 0 / note off do nothing) or pc; every "$" among the args
//       becomes the MIDI value (0..127) scaled onto lo..hi (a float); the rest are sent as given
//       (numbers without a fraction as int32). E.g. "0 cc 21" 0 100 /deck_eq A low $,
//       "0 cc 22" 0 1 /n_set 1000 gain $, "9 n 36" 0 1 /tempo_tap.
//   /midi_osc_remove "ch type param" [/address]   (every binding of the event, or those to /address)
//   /midi_osc_list → /midi_osc.reply "ch type param" lo hi /address args... each, then /done
// The clock is the engine's (it follows an incoming clock on the audio thread).
//
// Threads: [control].
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "server/control/Module.h"
#include "server/midi/MidiParser.h"

namespace loopd {

class SooperLooper;

class MidiModule final : public Module {
public:
    MidiModule(Controller& c, SooperLooper& sooperLooper);
    void poll() override;

private:
    struct OscBinding {
        int key = 0;            // status (kind | channel) << 8 | param
        std::string event;      // "ch type param"
        float lo = 0.0f, hi = 1.0f;
        std::string address;
        std::vector<std::variant<int32_t, float, std::string>> args;
    };
    void hMidiOsc(Msg&); void hMidiOscRemove(Msg&); void hMidiOscList(Msg&);
    static int eventKey(const std::string& event, std::string& normalized); // 0 when not an event
    void runOscBindings(const midi::Message& m);

    SooperLooper& sooperLooper_;
    std::vector<OscBinding> oscBindings_;
    uint64_t received_ = 0;
};

} // namespace loopd
