#include "server/drivers/DeviceSupervisor.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <mutex>
#include <thread>

#include "server/engine/Engine.h"

namespace loopd {

DeviceSupervisor::DeviceSupervisor(Engine& engine, const DriverOptions& device, std::unique_ptr<Driver> driver, Report report)
    : engine_(engine), device_(device), driver_(std::move(driver)), report_(std::move(report)), ports_(device.clientName) {
    supervised_ = driver_->name() != "null";
    device_.name = driver_->name(); // `auto` retries what it found
    device_.sampleRate = engine_.config().sampleRate;
}

DeviceSupervisor::~DeviceSupervisor() { stop(); }

void DeviceSupervisor::start() {
    driver_->start(engine_);
    running_ = true;
    lastAdvance_ = std::chrono::steady_clock::now();
    if (supervised_ && device_.name == "jack" && ports_.attach()) ports_.poll();
}

void DeviceSupervisor::stop() {
    if (!running_) return;
    running_ = false;
    if (driver_) driver_->stop();
    if (lost_ && !lost_->inEngine()) lost_.release()->dispose(lostServerGone_);
    ports_.detach();
}

void DeviceSupervisor::poll() {
    if (!running_ || !supervised_) return;
    const auto now = std::chrono::steady_clock::now();
    if (lost_) {
        // One caller of the engine at a time: the null driver starts once no callback of the
        // lost device is inside the engine any more (callbacks from now on leave it alone).
        if (lost_->inEngine()) {
            if (!stuckLogged_ && now - lostAt_ > std::chrono::seconds(2)) {
                spdlog::error("driver {}: an audio callback is still inside the engine 2 s after the device was lost; waiting for it", device_.name);
                stuckLogged_ = true;
            }
            return;
        }
        lost_.release()->dispose(lostServerGone_);
        DriverOptions n = device_;
        n.name = "null";
        // The time the device was silent before that was noticed is rendered at once, so that
        // the clock (and a recording) goes on as if nothing had happened.
        n.catchUpFrames = static_cast<int64_t>(std::chrono::duration<double>(now - lastAdvance_).count() * engine_.config().sampleRate);
        driver_ = makeNullDriver(n);
        driver_->start(engine_);
        fallback_ = true;
        retryLogged_ = false;
        nextRetry_ = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(kRetrySeconds));
        report_("fallback", "null", lostWhy_);
        return;
    }
    if (fallback_) {
        if (attempt_ || now >= nextRetry_) retry();
        return;
    }
    ports_.poll();
    const int64_t t = engine_.sampleTime();
    if (t != lastSample_) {
        lastSample_ = t;
        lastAdvance_ = now;
    }
    if (ports_.serverGone()) lose("the JACK server shut down");
    else if (!driver_->healthy()) lose("the " + driver_->name() + " stream stopped");
    else if (now - lastAdvance_ > std::chrono::duration<double>(kStallSeconds))
        lose("no audio callback for " + std::to_string(static_cast<int>(kStallSeconds * 1000)) + " ms");
}

void DeviceSupervisor::lose(const std::string& why) {
    const std::string name = driver_->name();
    ports_.markLost();
    spdlog::error("driver {} lost: {}; carrying on with the null driver (clock, recordings and OSC keep going), "
                  "retrying every {:.0f} s", name, why, kRetrySeconds);
    report_("lost", name, why);
    driver_->detachEngine();
    lost_ = std::move(driver_);
    lostServerGone_ = ports_.serverGone();
    lostWhy_ = why;
    lostAt_ = std::chrono::steady_clock::now();
    stuckLogged_ = false;
    ports_.detach();
    poll(); // usually no callback is inside: the null driver starts now
}

void DeviceSupervisor::retry() {
    // The attempt runs on a thread of its own: opening a device can block (a JACK server that
    // hangs answers its clients late or never), and the control thread must go on serving OSC.
    if (!attempt_) {
        auto a = std::make_shared<Attempt>();
        const DriverOptions options = device_;
        std::thread([a, options] {
            std::unique_ptr<Driver> d;
            std::string why;
            try {
                d = openDriver(options);
            } catch (const std::exception& e) {
                why = e.what();
            }
            std::lock_guard<std::mutex> lock(a->mutex);
            a->driver = std::move(d);
            a->why = why;
            a->done = true;
        }).detach();
        attempt_ = std::move(a);
        attemptStarted_ = std::chrono::steady_clock::now();
        attemptStuckLogged_ = false;
        return;
    }
    std::unique_ptr<Driver> d;
    std::string why;
    {
        std::lock_guard<std::mutex> lock(attempt_->mutex);
        if (!attempt_->done) {
            // Still trying. An open that does not return (a JACK library blocked inside a client
            // it could not close) is said once, so that a device that never comes back has a
            // reason in the log; loopd goes on with the null driver meanwhile.
            if (!attemptStuckLogged_ && std::chrono::steady_clock::now() - attemptStarted_ > std::chrono::duration<double>(kStuckSeconds)) {
                spdlog::error("driver {}: opening it has not returned for {:.0f} s (the audio library may be stuck); "
                              "carrying on with the null driver", device_.name, kStuckSeconds);
                attemptStuckLogged_ = true;
            }
            return;
        }
        d = std::move(attempt_->driver);
        why = attempt_->why;
    }
    attempt_.reset();
    nextRetry_ = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(kRetrySeconds));
    if (d && std::fabs(d->sampleRate() - engine_.config().sampleRate) > 0.5) {
        why = device_.name + " is back at " + std::to_string(static_cast<int>(d->sampleRate())) + " Hz, loopd runs at " +
              std::to_string(static_cast<int>(engine_.config().sampleRate)) + " Hz";
        d.reset();
    }
    if (!d) {
        if (!retryLogged_) spdlog::info("driver {} not back yet ({}); retrying every {:.0f} s", device_.name, why, kRetrySeconds);
        else spdlog::debug("driver {} not back yet: {}", device_.name, why);
        retryLogged_ = true;
        return;
    }
    // One caller at a time: the null driver's thread ends before the device's starts.
    driver_->stop();
    driver_ = std::move(d);
    try {
        driver_->start(engine_);
    } catch (const std::exception& e) {
        spdlog::warn("driver {} opened but did not start: {}", device_.name, e.what());
        DriverOptions n = device_;
        n.name = "null";
        driver_ = makeNullDriver(n);
        driver_->start(engine_);
        return;
    }
    fallback_ = false;
    lastSample_ = -1;
    lastAdvance_ = std::chrono::steady_clock::now();
    std::string detail;
    if (device_.name == "jack" && ports_.attach()) {
        const int made = ports_.restore();
        detail = made < 0 ? std::string("no connections to restore") : std::to_string(made) + " connections restored";
    }
    spdlog::info("driver {} is back ({}); the null driver stopped", device_.name, detail.empty() ? "running" : detail);
    report_("restored", device_.name, detail);
}

} // namespace loopd
