#include "server/midi/AlsaMidi.h"

#include <rtmidi/RtMidi.h>

#include <cerrno>
#include <cstring>
#include <chrono>
#include <vector>

#include <unistd.h>

#include "server/engine/Engine.h"

namespace loopd {

AlsaMidi::AlsaMidi() = default;
AlsaMidi::~AlsaMidi() { close(); }

bool AlsaMidi::open(Engine& engine, const std::string& clientName, std::string& why) {
    // RtMidi prints its own error before it throws: the usual case is told in loopd's one line.
    if (access("/dev/snd/seq", R_OK | W_OK) != 0) {
        why = "/dev/snd/seq: " + std::string(std::strerror(errno));
        return false;
    }
    try {
        auto in = std::make_unique<RtMidiIn>(RtMidi::LINUX_ALSA, clientName, 1024);
        in->ignoreTypes(true, false, true); // SysEx and active sensing out; clock in
        in->setCallback([](double, std::vector<unsigned char>* message, void* user) {
            if (message && !message->empty()) static_cast<Engine*>(user)->midiFromThread(message->data(), message->size());
        }, &engine);
        in->openVirtualPort("midi_in");
        auto out = std::make_unique<RtMidiOut>(RtMidi::LINUX_ALSA, clientName);
        out->openVirtualPort("midi_out");
        in_ = std::move(in);
        out_ = std::move(out);
        engine_ = &engine;
        engine.setMidiOutputThread(true);
        running_ = true;
        sender_ = std::thread([this] {
            std::vector<unsigned char> bytes;
            while (running_.load(std::memory_order_acquire)) {
                for (midi::MidiEvent e; engine_->popMidiOutForThread(e);) {
                    bytes.assign(e.bytes, e.bytes + e.size);
                    try {
                        out_->sendMessage(&bytes);
                    } catch (const RtMidiError&) {
                    }
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        });
        return true;
    } catch (const RtMidiError& e) {
        why = e.getMessage();
    }
    return false;
}

void AlsaMidi::close() {
    running_ = false;
    if (sender_.joinable()) sender_.join();
    if (engine_) engine_->setMidiOutputThread(false);
    if (in_) in_->cancelCallback();
    in_.reset();
    out_.reset();
}

} // namespace loopd
