// The JACK driver: loopd's own JACK client (libjack, not RtAudio: RtAudio 5.2 keeps its client to
// itself, and loopd's MIDI ports must live on the same client as its audio so that a MIDI event
// reaches the engine in the very cycle, at the very frame, it arrived in — and MIDI clock leaves
// on its sample). Ports, named as RtAudio named them so that connections and scripts carry over:
//   loopd:outport 0..N-1, loopd:inport 0..M-1   audio
//   loopd:midi_in, loopd:midi_out               MIDI (events at their frame in the cycle)
// On activation the audio ports are connected to the physical ports (or to the ports of the
// client --device names), as RtAudio did.
//
// Threads: [control] open/start/stop/dispose; [audio] JACK's process thread; JACK's notification
// thread only raises flags (shutdown, xrun).
#include <jack/jack.h>
#include <jack/midiport.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "server/drivers/Driver.h"
#include "server/engine/Engine.h"

namespace loopd {
namespace {

class JackDriver final : public Driver {
public:
    explicit JackDriver(const DriverOptions& o) : options_(o) {}
    ~JackDriver() override { stop(); }

    // [control] Throws when no JACK server runs or the ports cannot be made.
    void open() {
        jack_status_t status{};
        client_ = jack_client_open(options_.clientName.c_str(), JackNoStartServer, &status);
        if (!client_) throw std::runtime_error("no JACK server is running");
        rate_ = jack_get_sample_rate(client_);
        period_ = jack_get_buffer_size(client_);
        const int outs = std::max(0, options_.numOutputs), ins = std::max(0, options_.numInputs);
        for (int c = 0; c < outs; ++c) registerPort("outport " + std::to_string(c), JACK_DEFAULT_AUDIO_TYPE, JackPortIsOutput, out_);
        for (int c = 0; c < ins; ++c) registerPort("inport " + std::to_string(c), JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, in_);
        if (options_.midiPorts) {
            std::vector<jack_port_t*> midi;
            registerPort("midi_in", JACK_DEFAULT_MIDI_TYPE, JackPortIsInput, midi);
            registerPort("midi_out", JACK_DEFAULT_MIDI_TYPE, JackPortIsOutput, midi);
            midiIn_ = midi[0];
            midiOut_ = midi[1];
        }
        // Room for the largest period JACK allows; a larger one is silence (and an xrun).
        interleavedIn_.assign(static_cast<size_t>(kMaxPeriod) * std::max<size_t>(1, in_.size()), 0.0f);
        interleavedOut_.assign(static_cast<size_t>(kMaxPeriod) * std::max<size_t>(1, out_.size()), 0.0f);
        jack_set_process_callback(client_, &JackDriver::process, this);
        jack_set_xrun_callback(client_, [](void* self) { static_cast<JackDriver*>(self)->xrunPending_.store(true, std::memory_order_relaxed); return 0; }, this);
        jack_on_info_shutdown(client_, [](jack_status_t, const char*, void* self) {
            static_cast<JackDriver*>(self)->gone_.store(true, std::memory_order_release);
        }, this);
        name_ = jack_get_client_name(client_);
    }

    void start(Engine& engine) override {
        engine_ = &engine;
        engine.setMidiOutput(midiOut_ != nullptr);
        if (jack_activate(client_) != 0) throw std::runtime_error("jack: the client could not be activated");
        active_ = true;
        const int connected = connectToDevice();
        spdlog::info("driver jack: client '{}', {} Hz, period {} frames, {} in / {} out ({} ports connected){}", name_, rate_, period_,
                     in_.size(), out_.size(), connected, midiIn_ ? ", MIDI " + name_ + ":midi_in " + name_ + ":midi_out" : std::string());
    }
    void stop() override {
        if (!client_) return;
        if (gone_.load(std::memory_order_acquire)) {
            // The server is gone: libjack2 deadlocks closing a client of a dead server while it
            // tears down the others of this process. It holds a few kilobytes: left as it is.
            client_ = nullptr;
            return;
        }
        if (active_) jack_deactivate(client_);
        active_ = false;
        jack_client_close(client_);
        client_ = nullptr;
    }
    std::string name() const override { return "jack"; }
    double sampleRate() const override { return rate_; }
    int periodFrames() const override { return static_cast<int>(period_); }
    bool healthy() const override { return client_ && !gone_.load(std::memory_order_acquire); }
    void detachEngine() override {
        abandoned_.store(true, std::memory_order_seq_cst);
        if (engine_) engine_->setMidiOutput(false);
    }
    bool inEngine() const override { return inCallback_.load(std::memory_order_seq_cst); }
    void dispose(bool serverGone) override {
        if (serverGone || gone_.load(std::memory_order_acquire)) {
            // The server is gone: its client cannot be closed (see stop()), and libjack's threads
            // may still hold this driver as their callbacks' argument. Both are kept, reachable,
            // for the rest of the run (a few kilobytes per lost server).
            std::lock_guard<std::mutex> lock(graveyardMutex());
            graveyard().push_back(this);
            return;
        }
        // A stalled server may keep jack_deactivate waiting: never on the control thread.
        std::thread([this] { delete this; }).detach();
    }
    int roundTripFrames() override {
        jack_latency_range_t r{};
        int frames = 0;
        if (!in_.empty()) { jack_port_get_latency_range(in_[0], JackCaptureLatency, &r); frames += static_cast<int>(r.max); }
        if (!out_.empty()) { jack_port_get_latency_range(out_[0], JackPlaybackLatency, &r); frames += static_cast<int>(r.max); }
        return frames;
    }

private:
    static constexpr jack_nframes_t kMaxPeriod = 8192;
    static std::vector<JackDriver*>& graveyard() { static std::vector<JackDriver*> g; return g; }
    static std::mutex& graveyardMutex() { static std::mutex m; return m; }

    void registerPort(const std::string& port, const char* type, unsigned long flags, std::vector<jack_port_t*>& into) {
        jack_port_t* p = jack_port_register(client_, port.c_str(), type, flags, 0);
        if (!p) {
            jack_client_close(client_);
            client_ = nullptr;
            throw std::runtime_error("jack: port '" + port + "' could not be registered");
        }
        into.push_back(p);
    }

    // [control] outport c → the device's c-th playback port, its c-th capture port → inport c.
    // The device: --device names a JACK client (or part of its name, or its index among the
    // clients with audio ports); by default the physical ports.
    int connectToDevice() {
        std::string prefix;
        if (!options_.device.empty()) {
            const char** all = jack_get_ports(client_, nullptr, JACK_DEFAULT_AUDIO_TYPE, 0);
            std::vector<std::string> clients;
            for (const char** p = all; p && *p; ++p) {
                const std::string c = std::string(*p).substr(0, std::string(*p).find(':'));
                if (c != name_ && std::find(clients.begin(), clients.end(), c) == clients.end()) clients.push_back(c);
            }
            if (all) jack_free(all);
            char* end = nullptr;
            const long idx = std::strtol(options_.device.c_str(), &end, 10);
            if (end && *end == '\0' && idx >= 0 && static_cast<size_t>(idx) < clients.size()) prefix = clients[static_cast<size_t>(idx)];
            for (const auto& c : clients)
                if (prefix.empty() && c.find(options_.device) != std::string::npos) prefix = c;
            if (prefix.empty()) {
                spdlog::warn("driver jack: no JACK client matches --device '{}'; loopd's ports are left unconnected", options_.device);
                return 0;
            }
        }
        auto peers = [&](unsigned long flags) {
            std::vector<std::string> names;
            const std::string pattern = prefix.empty() ? std::string() : "^" + prefix + ":";
            const char** ports = jack_get_ports(client_, pattern.empty() ? nullptr : pattern.c_str(), JACK_DEFAULT_AUDIO_TYPE,
                                                flags | (prefix.empty() ? JackPortIsPhysical : 0));
            for (const char** p = ports; p && *p; ++p) names.emplace_back(*p);
            if (ports) jack_free(ports);
            return names;
        };
        int made = 0;
        const auto playback = peers(JackPortIsInput);
        for (size_t c = 0; c < out_.size() && c < playback.size(); ++c)
            if (jack_connect(client_, jack_port_name(out_[c]), playback[c].c_str()) == 0) ++made;
        const auto capture = peers(JackPortIsOutput);
        for (size_t c = 0; c < in_.size() && c < capture.size(); ++c)
            if (jack_connect(client_, capture[c].c_str(), jack_port_name(in_[c])) == 0) ++made;
        return made;
    }

    // [audio]
    static int process(jack_nframes_t frames, void* arg) {
        auto* self = static_cast<JackDriver*>(arg);
        // libjack may cancel this thread when its server goes away; a cancel that lands inside the
        // engine (noexcept throughout) would end the process. It waits until the engine is left.
        int cancelState = 0;
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancelState);
        self->inCallback_.store(true, std::memory_order_seq_cst);
        self->render(frames);
        self->inCallback_.store(false, std::memory_order_release);
        pthread_setcancelstate(cancelState, nullptr);
        return 0;
    }

    void render(jack_nframes_t frames) noexcept {
        void* midiOut = midiOut_ ? jack_port_get_buffer(midiOut_, frames) : nullptr;
        if (midiOut) jack_midi_clear_buffer(midiOut);
        const size_t nOut = out_.size(), nIn = in_.size();
        if (abandoned_.load(std::memory_order_seq_cst) || frames > kMaxPeriod) {
            for (auto* p : out_) std::memset(jack_port_get_buffer(p, frames), 0, sizeof(float) * frames);
            if (frames > kMaxPeriod) engine_->noteXrun();
            return;
        }
        if (xrunPending_.exchange(false, std::memory_order_relaxed)) engine_->noteXrun();
        // A cycle this client missed: JACK's clock went on without loopd's timeline.
        const jack_nframes_t cycleStart = jack_last_frame_time(client_);
        if (haveCycle_) {
            const auto slipped = static_cast<int32_t>(cycleStart - nextCycle_);
            if (slipped > 0) engine_->driverClockSlipped(slipped);
        }
        nextCycle_ = cycleStart + frames;
        haveCycle_ = true;
        for (size_t c = 0; c < nIn; ++c) {
            const auto* x = static_cast<const float*>(jack_port_get_buffer(in_[c], frames));
            for (jack_nframes_t i = 0; i < frames; ++i) interleavedIn_[i * nIn + c] = x[i];
        }
        void* midiIn = midiIn_ ? jack_port_get_buffer(midiIn_, frames) : nullptr;
        const uint32_t events = midiIn ? jack_midi_get_event_count(midiIn) : 0;
        for (uint32_t e = 0; e < events; ++e) {
            jack_midi_event_t ev;
            if (jack_midi_event_get(&ev, midiIn, e) == 0) engine_->midiIn(static_cast<int>(ev.time), ev.buffer, ev.size);
        }
        engine_->processInterleaved(nIn ? interleavedIn_.data() : nullptr, static_cast<int>(nIn), interleavedOut_.data(),
                                    static_cast<int>(nOut), static_cast<int>(frames));
        for (size_t c = 0; c < nOut; ++c) {
            auto* y = static_cast<float*>(jack_port_get_buffer(out_[c], frames));
            for (jack_nframes_t i = 0; i < frames; ++i) y[i] = interleavedOut_[i * nOut + c];
        }
        if (midiOut) engine_->drainMidiOut(static_cast<int>(frames), [&](int offset, const uint8_t* bytes, int size) {
            jack_midi_event_write(midiOut, static_cast<jack_nframes_t>(offset), bytes, static_cast<size_t>(size));
        });
    }

    DriverOptions options_;
    jack_client_t* client_ = nullptr;
    std::string name_;
    std::vector<jack_port_t*> in_, out_;
    jack_port_t* midiIn_ = nullptr;
    jack_port_t* midiOut_ = nullptr;
    std::vector<float> interleavedIn_, interleavedOut_;
    Engine* engine_ = nullptr;
    jack_nframes_t rate_ = 48000, period_ = 256;
    bool active_ = false;
    jack_nframes_t nextCycle_ = 0; // [audio] JACK's frame the next cycle should start at
    bool haveCycle_ = false;       // [audio]
    std::atomic<bool> abandoned_{false}, inCallback_{false}, gone_{false}, xrunPending_{false};
};

} // namespace

// [control] Throws std::runtime_error (why) when JACK cannot be used.
std::unique_ptr<Driver> openJackDriver(const DriverOptions& o) {
    auto d = std::make_unique<JackDriver>(o);
    d->open();
    return d;
}

} // namespace loopd
