// ALSA and PulseAudio through RtAudio 5.2 (exceptions, index-based devices), and the `auto`
// selection: JACK (JackDriver.cpp, loopd's own client) if a server runs, else the default
// ALSA/Pulse device, else `null`.
#include <alsa/asoundlib.h>
#include <jack/jack.h>
#include <pthread.h>
#include <rtaudio/RtAudio.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "server/drivers/Driver.h"
#include "server/engine/Engine.h"

namespace loopd {
namespace {

// alsa-lib prints its own errors to stderr while RtAudio probes for cards; loopd reports the
// outcome itself in one line.
void quietAlsa(const char*, int, const char*, int, const char*, ...) {}

class RtAudioDriver final : public Driver {
public:
    RtAudioDriver(RtAudio::Api api, const DriverOptions& o) : api_(api), options_(o), audio_(api) {
        audio_.showWarnings(false);
    }
    ~RtAudioDriver() override { stop(); }

    // [control] Throws when the API has no usable device.
    void open() {
        const unsigned count = audio_.getDeviceCount();
        if (count == 0) throw std::runtime_error(apiName() + ": no devices");
        unsigned dev = audio_.getDefaultOutputDevice();
        if (!options_.device.empty()) {
            bool found = false;
            char* end = nullptr;
            const long idx = std::strtol(options_.device.c_str(), &end, 10);
            if (end && *end == '\0' && idx >= 0 && static_cast<unsigned>(idx) < count) { dev = static_cast<unsigned>(idx); found = true; }
            for (unsigned i = 0; i < count && !found; ++i) {
                const auto info = audio_.getDeviceInfo(i);
                if (info.probed && info.name.find(options_.device) != std::string::npos) { dev = i; found = true; }
            }
            if (!found) throw std::runtime_error(apiName() + ": no device matches '" + options_.device + "'");
        }
        const RtAudio::DeviceInfo info = audio_.getDeviceInfo(dev);
        if (!info.probed || info.outputChannels == 0) throw std::runtime_error(apiName() + ": device " + std::to_string(dev) + " has no outputs");
        rate_ = static_cast<unsigned>(options_.sampleRate);
        if (api_ == RtAudio::UNIX_JACK && !info.sampleRates.empty()) rate_ = info.sampleRates.front(); // JACK's own rate
        outChannels_ = std::min<unsigned>(static_cast<unsigned>(options_.numOutputs), info.outputChannels);
        inChannels_ = std::min<unsigned>(static_cast<unsigned>(options_.numInputs), info.inputChannels);
        RtAudio::StreamParameters out;
        out.deviceId = dev;
        out.nChannels = outChannels_;
        RtAudio::StreamParameters in;
        in.deviceId = api_ == RtAudio::UNIX_JACK ? dev : audio_.getDefaultInputDevice();
        in.nChannels = inChannels_;
        RtAudio::StreamOptions so;
        so.flags = RTAUDIO_SCHEDULE_REALTIME | RTAUDIO_MINIMIZE_LATENCY;
        so.streamName = options_.clientName;
        so.priority = 70;
        period_ = static_cast<unsigned>(options_.periodFrames);
        try {
            audio_.openStream(&out, inChannels_ ? &in : nullptr, RTAUDIO_FLOAT32, rate_, &period_, &RtAudioDriver::callback, this, &so);
        } catch (const RtAudioError&) {
            if (!inChannels_) throw;
            // Output only when the input side cannot be opened.
            inChannels_ = 0;
            period_ = static_cast<unsigned>(options_.periodFrames);
            audio_.openStream(&out, nullptr, RTAUDIO_FLOAT32, rate_, &period_, &RtAudioDriver::callback, this, &so);
        }
        deviceName_ = info.name;
    }

    void start(Engine& engine) override {
        engine_ = &engine;
        audio_.startStream();
        spdlog::info("driver {}: device '{}', {} Hz, period {} frames, {} in / {} out", apiName(), deviceName_, rate_, period_, inChannels_, outChannels_);
    }
    void stop() override {
        try {
            // abortStream, not stopStream: RtAudio 5.2's JACK stopStream waits on a condition with a
            // mutex it never locked (undefined behaviour; ThreadSanitizer stops on it) and waits
            // for the callback to drain, which never comes from a device that stalled.
            if (audio_.isStreamRunning()) audio_.abortStream();
            if (audio_.isStreamOpen()) audio_.closeStream();
        } catch (const RtAudioError& e) {
            spdlog::warn("driver {}: {}", apiName(), e.getMessage());
        }
    }
    std::string name() const override { return apiName(); }
    double sampleRate() const override { return rate_; }
    int periodFrames() const override { return static_cast<int>(period_); }
    bool healthy() const override {
        auto& a = const_cast<RtAudio&>(audio_); // RtAudio's queries are not const
        return a.isStreamOpen() && a.isStreamRunning();
    }
    void detachEngine() override { abandoned_.store(true, std::memory_order_seq_cst); }
    bool inEngine() const override { return inCallback_.load(std::memory_order_seq_cst); }
    void dispose(bool serverGone) override {
        // RtAudio closes a stream that JACK shut down on a thread of its own: closing it here too
        // would race with that thread.
        const bool closing = serverGone || !healthy();
        std::thread([this, closing] {
            if (closing) {
                for (int i = 0; i < 300 && audio_.isStreamOpen(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
                if (audio_.isStreamOpen()) return; // still closing after 3 s: leave it alone (leaked)
            } else {
                stop(); // a stalled device: this may block for as long as the device hangs
            }
            delete this;
        }).detach();
    }
    int roundTripFrames() override {
        try {
            return static_cast<int>(audio_.getStreamLatency());
        } catch (const RtAudioError&) {
            return 0;
        }
    }

private:
    std::string apiName() const {
        switch (api_) {
        case RtAudio::UNIX_JACK: return "jack";
        case RtAudio::LINUX_ALSA: return "alsa";
        case RtAudio::LINUX_PULSE: return "pulse";
        default: return "rtaudio";
        }
    }

    // [audio]
    static int callback(void* out, void* in, unsigned int frames, double, RtAudioStreamStatus status, void* user) {
        auto* self = static_cast<RtAudioDriver*>(user);
        // libjack may cancel this thread asynchronously when its server goes away; a cancel that
        // lands inside the engine (noexcept throughout) would end the process (std::terminate).
        // It waits until the engine is left (a flag, no system call).
        int cancelState = 0;
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancelState);
        self->inCallback_.store(true, std::memory_order_seq_cst);
        if (self->abandoned_.load(std::memory_order_seq_cst)) {
            // Another driver feeds the engine now.
            std::fill_n(static_cast<float*>(out), static_cast<size_t>(frames) * self->outChannels_, 0.0f);
            self->inCallback_.store(false, std::memory_order_release);
            pthread_setcancelstate(cancelState, nullptr);
            return 0;
        }
        if (status) self->engine_->noteXrun();
        self->engine_->processInterleaved(static_cast<const float*>(in), static_cast<int>(self->inChannels_),
                                          static_cast<float*>(out), static_cast<int>(self->outChannels_),
                                          static_cast<int>(frames));
        self->inCallback_.store(false, std::memory_order_release);
        pthread_setcancelstate(cancelState, nullptr);
        return 0;
    }

    RtAudio::Api api_;
    DriverOptions options_;
    RtAudio audio_;
    Engine* engine_ = nullptr;
    std::atomic<bool> abandoned_{false}, inCallback_{false};
    unsigned rate_ = 48000, period_ = 256, inChannels_ = 0, outChannels_ = 2;
    std::string deviceName_;
};

std::unique_ptr<Driver> tryApi(RtAudio::Api api, const DriverOptions& o, std::string& why) {
    try {
        auto d = std::make_unique<RtAudioDriver>(api, o);
        d->open();
        return d;
    } catch (const RtAudioError& e) {
        why = e.getMessage();
    } catch (const std::exception& e) {
        why = e.what();
    }
    return nullptr;
}

} // namespace

std::unique_ptr<Driver> openDriver(const DriverOptions& o) {
    setenv("JACK_NO_START_SERVER", "1", 0); // never start a JACK server behind the user's back
    // libjack prints every failed connection attempt; loopd reports the outcome itself (and
    // retries a lost server every few seconds).
    jack_set_error_function([](const char*) {});
    jack_set_info_function([](const char*) {});
    snd_lib_error_set_handler(&quietAlsa);
    std::string why;
    if (o.name == "null") return makeNullDriver(o);
    auto tryJack = [&]() -> std::unique_ptr<Driver> {
        try {
            return openJackDriver(o);
        } catch (const std::exception& e) {
            why = std::string("jack: ") + e.what();
        }
        return nullptr;
    };
    if (o.name == "jack") {
        if (auto d = tryJack()) return d;
        throw std::runtime_error("driver jack could not be opened: " + why);
    }
    if (o.name == "alsa" || o.name == "pulse") {
        const RtAudio::Api api = o.name == "alsa" ? RtAudio::LINUX_ALSA : RtAudio::LINUX_PULSE;
        if (auto d = tryApi(api, o, why)) return d;
        throw std::runtime_error("driver " + o.name + " could not be opened: " + why);
    }
    if (o.name != "auto") throw std::runtime_error("unknown driver '" + o.name + "' (auto, jack, alsa, pulse, null)");
    std::string tried;
    if (auto d = tryJack()) return d;
    tried = why;
    for (RtAudio::Api api : {RtAudio::LINUX_ALSA, RtAudio::LINUX_PULSE}) {
        if (auto d = tryApi(api, o, why)) return d;
        tried += (tried.empty() ? "" : "; ") + why;
    }
    spdlog::warn("no audio device available ({}); running on the null driver (no sound, OSC and recording work)", tried);
    return makeNullDriver(o);
}

} // namespace loopd
