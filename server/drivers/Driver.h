#pragma once
// Audio drivers call Engine::processInterleaved() from their own thread. The engine knows
// nothing of them.
#include <memory>
#include <string>

namespace loopd {

class Engine;

struct DriverOptions {
    std::string name = "auto";   // auto, jack, alsa, pulse, null
    std::string device;          // RtAudio device index or (part of) its name; "" = default
    double sampleRate = 48000.0;
    int periodFrames = 256;      // --buffer-size
    int numInputs = 2;
    int numOutputs = 2;
    std::string clientName = "loopd"; // the JACK client name (--jack-name)
    bool midiPorts = true;       // JACK: loopd:midi_in / loopd:midi_out beside the audio (--midi)
    // null: frames rendered at once when it starts, before it paces itself (a device lost
    // mid-stream went silent for a while before that was noticed: the clock keeps wall time).
    int64_t catchUpFrames = 0;
    // null: the input is this file, looped from the first frame the driver renders (engine sample
    // n hears frame n mod length), resampled to the rate; its channels fill the inputs in turn.
    std::string inputFile;
};

class Driver {
public:
    virtual ~Driver() = default;
    virtual void start(Engine& engine) = 0; // [control] throws std::runtime_error
    virtual void stop() = 0;                // [control]
    virtual std::string name() const = 0;
    virtual double sampleRate() const = 0;
    virtual int periodFrames() const = 0;
    // [control] Input + output latency in frames as the device reports it (0 when unknown).
    virtual int roundTripFrames() { return 0; }
    // [control] Whether the device's stream still runs, as far as the driver knows.
    virtual bool healthy() const { return true; }
    // When the device fails (DeviceSupervisor): detachEngine() makes every callback from then on
    // leave the engine alone (silence); inEngine() says whether one is still inside it (another
    // driver may start only when none is); dispose() releases the device and deletes the driver,
    // on a thread of its own when the device might hang (call it on a pointer released from its
    // unique_ptr). `serverGone`: the sound server is known to have shut down (its client library
    // tears the stream down by itself). [control]
    virtual void detachEngine() {}
    virtual bool inEngine() const { return false; }
    virtual void dispose(bool serverGone) { (void)serverGone; stop(); delete this; }
};

// [control] Chooses and opens a driver; `auto` tries JACK, then ALSA/Pulse, then null with one
// warning. The chosen rate/period may differ from the request (JACK imposes its own).
std::unique_ptr<Driver> openDriver(const DriverOptions& options);

std::unique_ptr<Driver> makeNullDriver(const DriverOptions& options);
// [control] loopd's own JACK client with audio and MIDI ports (JackDriver.cpp); throws why not.
std::unique_ptr<Driver> openJackDriver(const DriverOptions& options);

} // namespace loopd
