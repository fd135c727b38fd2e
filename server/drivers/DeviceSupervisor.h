#pragma once
// Keeps the engine running whatever happens to the audio device. When the device goes away
// (the JACK server crashed or was restarted, an ALSA/USB interface was unplugged, the callback
// stopped coming), the supervisor carries on with the null driver at the same rate — the tempo
// clock, the scheduler, recordings and OSC never stop — retries the device every few seconds,
// and switches back when it returns, with loopd's JACK ports connected as they were. Each step
// is logged and reported to the caller (which tells /notify clients).
//
// Only one driver calls the engine at any time: a lost device is released (or known dead)
// before the null driver starts, and the null driver is stopped before the device restarts.
//
// Threads: [control] for every method.
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "server/drivers/Driver.h"
#include "server/drivers/JackPortMemory.h"

namespace loopd {

class Engine;

class DeviceSupervisor {
public:
    // state: "lost" (the device stopped; detail says why), "fallback" (the null driver runs),
    // "restored" (the device runs again; detail: connections restored).
    using Report = std::function<void(const std::string& state, const std::string& driver, const std::string& detail)>;

    // `device`: the options the device was opened with (its name: jack, alsa, pulse).
    DeviceSupervisor(Engine& engine, const DriverOptions& device, std::unique_ptr<Driver> driver, Report report);
    ~DeviceSupervisor();
    DeviceSupervisor(const DeviceSupervisor&) = delete;
    DeviceSupervisor& operator=(const DeviceSupervisor&) = delete;

    // [control] Starts the driver given at construction (throws as Driver::start does).
    void start();
    // [control] Call every few milliseconds: detects a lost device, falls back, retries.
    void poll();
    // [control] Stops whichever driver runs.
    void stop();

    const Driver* current() const noexcept { return driver_.get(); } // null while switching
    bool onFallback() const noexcept { return fallback_; }

    // Seconds between attempts to reopen the device, and the silence after which a device whose
    // callback stopped coming counts as lost.
    static constexpr double kRetrySeconds = 3.0;
    static constexpr double kStallSeconds = 1.5;

private:
    void lose(const std::string& why);
    void retry();

    Engine& engine_;
    DriverOptions device_;
    std::unique_ptr<Driver> driver_;
    Report report_;
    JackPortMemory ports_;
    bool supervised_ = false;  // a real device (not null, not nrt)
    bool fallback_ = false;
    bool running_ = false;
    int64_t lastSample_ = -1;
    std::chrono::steady_clock::time_point lastAdvance_, nextRetry_;
    bool retryLogged_ = false;
    // A device found lost, waiting until no callback of it is inside the engine.
    std::unique_ptr<Driver> lost_;
    bool lostServerGone_ = false, stuckLogged_ = false;
    std::string lostWhy_;
    std::chrono::steady_clock::time_point lostAt_;
    // An attempt to reopen the device, under way on a thread of its own (shared: an attempt that
    // never returns is left behind at shutdown).
    struct Attempt {
        std::mutex mutex;
        bool done = false;
        std::unique_ptr<Driver> driver;
        std::string why;
    };
    std::shared_ptr<Attempt> attempt_;
    std::chrono::steady_clock::time_point attemptStarted_;
    bool attemptStuckLogged_ = false;
    static constexpr double kStuckSeconds = 10.0; // an open that has not returned by then is logged
};

} // namespace loopd
