// The `null` driver: no device. A thread paced by CLOCK_MONOTONIC renders one period per period
// duration, so the server runs, answers OSC, schedules and records exactly as with a sound card.
#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "server/drivers/Driver.h"
#include "server/engine/BufferData.h"
#include "server/engine/Engine.h"
#include "server/io/AudioFile.h"

namespace loopd {
namespace {

class NullDriver final : public Driver {
public:
    explicit NullDriver(const DriverOptions& o) : options_(o) {
        if (!o.inputFile.empty()) {
            LoadOptions lo;
            lo.targetRate = o.sampleRate;
            lo.what = "the null driver's input";
            input_ = loadAudioFile(o.inputFile, lo); // throws: the server does not start
            if (input_->numFrames <= 0) throw std::runtime_error("the null driver's input " + o.inputFile + " is empty");
        }
    }
    ~NullDriver() override { stop(); }

    void start(Engine& engine) override {
        running_ = true;
        thread_ = std::thread([this, &engine] { pthread_setname_np(pthread_self(), "loopd-audio"); run(engine); });
    }
    void stop() override {
        running_ = false;
        if (thread_.joinable()) thread_.join();
    }
    std::string name() const override { return "null"; }
    double sampleRate() const override { return options_.sampleRate; }
    int periodFrames() const override { return options_.periodFrames; }

private:
    void run(Engine& engine) {
        sched_param sp{};
        sp.sched_priority = 70;
        pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp); // best effort; fine without rights
        const int n = options_.periodFrames;
        std::vector<float> in(static_cast<size_t>(n * std::max(1, options_.numInputs)), 0.0f);
        std::vector<float> out(static_cast<size_t>(n * options_.numOutputs), 0.0f);
        const long long periodNs = static_cast<long long>(1e9 * n / options_.sampleRate);
        for (int64_t done = 0; done < options_.catchUpFrames && running_; done += n) {
            fillInput(in);
            engine.processInterleaved(in.data(), options_.numInputs, out.data(), options_.numOutputs, n);
        }
        timespec next;
        clock_gettime(CLOCK_MONOTONIC, &next);
        // A late block is made up for by rendering the next ones at once, so the sample clock keeps
        // wall time (a loop recorded between two OSC messages is as long as the time between them,
        // even on a loaded machine). A missed deadline counts as an xrun, once per late stretch;
        // only when more than kGiveUpNs behind does the clock give the time up and resynchronise.
        constexpr long long kGiveUpNs = 500'000'000LL;
        bool late = false;
        while (running_) {
            fillInput(in);
            engine.processInterleaved(in.data(), options_.numInputs, out.data(), options_.numOutputs, n);
            next.tv_nsec += periodNs;
            while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; ++next.tv_sec; }
            timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            const long long lateNs = (now.tv_sec - next.tv_sec) * 1000000000LL + (now.tv_nsec - next.tv_nsec);
            if (lateNs > periodNs) {
                if (!late) engine.noteXrun();
                late = true;
                if (lateNs > kGiveUpNs) next = now;
                continue;
            }
            late = false;
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr);
        }
    }

    // The next period of the input file (interleaved), looped; silence without one.
    void fillInput(std::vector<float>& in) noexcept {
        if (!input_) return;
        const int ins = std::max(1, options_.numInputs), n = options_.periodFrames;
        for (int i = 0; i < n; ++i) {
            for (int c = 0; c < ins; ++c)
                in[static_cast<size_t>(i * ins + c)] = c < options_.numInputs ? input_->channel(c % input_->numChannels)[filePos_] : 0.0f;
            if (++filePos_ >= input_->numFrames) filePos_ = 0;
        }
    }

    DriverOptions options_;
    std::unique_ptr<BufferData> input_;
    int64_t filePos_ = 0;
    std::atomic<bool> running_{false};
    std::thread thread_;
};

} // namespace

std::unique_ptr<Driver> makeNullDriver(const DriverOptions& options) { return std::make_unique<NullDriver>(options); }

} // namespace loopd
