#pragma once
// MIDI through the ALSA sequencer (RtMidi): loopd's virtual ports `midi_in` / `midi_out` where
// /dev/snd/seq exists, for drivers without MIDI ports of their own (ALSA, Pulse, null). What
// arrives is handed to the engine from RtMidi's thread (Engine::midiFromThread: it is taken at
// the next block's start; the ALSA sequencer's timing is not sample-accurate anyway); what the
// engine sends (clock, LED feedback) a sender thread of its own takes block by block
// (Engine::popMidiOutForThread) and sends at once. Without a sequencer RtMidi throws: open()
// says why and loopd runs without MIDI.
//
// Threads: [control] open/close; RtMidi's own input thread and the sender thread call into the
// engine.
#include <atomic>
#include <memory>
#include <string>
#include <thread>

class RtMidiIn;
class RtMidiOut;

namespace loopd {

class Engine;

class AlsaMidi {
public:
    AlsaMidi();
    ~AlsaMidi();
    AlsaMidi(const AlsaMidi&) = delete;
    AlsaMidi& operator=(const AlsaMidi&) = delete;
    // [control] False (and `why`) when the ALSA sequencer cannot be used.
    bool open(Engine& engine, const std::string& clientName, std::string& why);
    void close();

private:
    std::unique_ptr<RtMidiIn> in_;
    std::unique_ptr<RtMidiOut> out_;
    Engine* engine_ = nullptr;
    std::atomic<bool> running_{false};
    std::thread sender_;
};

} // namespace loopd
