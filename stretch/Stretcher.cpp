#include "stretch/Stretcher.h"

#include <rubberband/RubberBandStretcher.h>
#include <soundtouch/SoundTouch.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace loopd::stretch {

std::optional<Method> methodFromName(std::string_view n) noexcept {
    if (n == "rate" || n == "playback_rate") return Method::Rate;
    if (n == "rb2" || n == "pyrubberband") return Method::Rb2;
    if (n == "rb3") return Method::Rb3;
    if (n == "wsola" || n == "audiotsm") return Method::Wsola;
    return std::nullopt;
}

const char* methodName(Method m) noexcept {
    switch (m) {
    case Method::Rate: return "rate";
    case Method::Rb2: return "rb2";
    case Method::Rb3: return "rb3";
    case Method::Wsola: return "wsola";
    }
    return "?";
}

namespace {

class RubberBandEngine final : public Stretcher {
public:
    RubberBandEngine(bool finer, int channels, double sampleRate, int maxFeed, double ratio, double pitch)
        : finer_(finer),
          rb_(static_cast<size_t>(sampleRate), static_cast<size_t>(channels),
              RubberBand::RubberBandStretcher::OptionProcessRealTime |
                  // R2: "mixed" transients keep percussion crisp without phase resets on tonal
                  // material (the default loses cycles of a steady tone: 437.6 Hz for 440 at 1.25).
                  (finer ? RubberBand::RubberBandStretcher::OptionEngineFiner
                         : RubberBand::RubberBandStretcher::OptionEngineFaster | RubberBand::RubberBandStretcher::OptionTransientsMixed) |
                  RubberBand::RubberBandStretcher::OptionPitchHighConsistency,
              ratio, pitch),
          ratio_(ratio), pitch_(pitch) {
        channels_ = channels;
        maxFeed_ = maxFeed;
        // The largest process() size first: no reallocation on the audio thread afterwards.
        rb_.setMaxProcessSize(static_cast<size_t>(maxFeed));
        zeros_.assign(static_cast<size_t>(maxFeed), 0.0f);
        zeroPtr_.assign(static_cast<size_t>(channels), zeros_.data());
        // Both engines grow buffers when a ratio or pitch needs more room than they have (R2's
        // reconfigure, R3's resampler): visit the extremes of the supported range here, on the
        // control thread, so that every buffer is at its largest before the audio thread uses
        // the stretcher. Then run at the starting settings until the engine's own smoothing has
        // settled (reset() does not clear it), and start clean.
        std::vector<float> sink(static_cast<size_t>(maxFeed));
        std::vector<float*> sinkPtr(static_cast<size_t>(channels), sink.data());
        for (double r : {0.25, 4.0})
            for (double p : {0.25, 4.0, 1.0}) {
                rb_.setTimeRatio(r);
                rb_.setPitchScale(p);
                for (int k = 0; k < 4; ++k) {
                    rb_.process(zeroPtr_.data(), static_cast<size_t>(maxFeed), false);
                    while (rb_.available() > 0) rb_.retrieve(sinkPtr.data(), static_cast<size_t>(std::min(rb_.available(), maxFeed)));
                }
            }
        rb_.setTimeRatio(ratio);
        rb_.setPitchScale(pitch);
        for (int k = 0; k < 24; ++k) {
            rb_.process(zeroPtr_.data(), static_cast<size_t>(maxFeed), false);
            while (rb_.available() > 0) rb_.retrieve(sinkPtr.data(), static_cast<size_t>(std::min(rb_.available(), maxFeed)));
        }
        rb_.reset();
        // After that, the engine's reported start delay no longer tells the whole latency (a
        // constant 125 frames more at 48 kHz, measured): find the rest with an impulse.
        prime(ratio, pitch);
        std::vector<float> impulse(static_cast<size_t>(maxFeed), 0.0f);
        impulse[0] = 1.0f;
        std::vector<const float*> impPtr(static_cast<size_t>(channels), impulse.data());
        int outAt = 0, peakAt = -1;
        float peak = 0.0f;
        for (int k = 0; k < 8; ++k) {
            rb_.process(k == 0 ? impPtr.data() : zeroPtr_.data(), static_cast<size_t>(maxFeed), false);
            while (rb_.available() > 0) {
                const int got = static_cast<int>(rb_.retrieve(sinkPtr.data(), static_cast<size_t>(std::min(rb_.available(), maxFeed))));
                for (int i = 0; i < got; ++i)
                    if (std::fabs(sink[static_cast<size_t>(i)]) > peak) { peak = std::fabs(sink[static_cast<size_t>(i)]); peakAt = outAt + i; }
                outAt += got;
            }
        }
        extraDelay_ = peakAt >= 0 ? std::max(0, peakAt - static_cast<int>(rb_.getStartDelay())) : 0;
        rb_.reset();
        rb_.setTimeRatio(ratio);
        rb_.setPitchScale(pitch);
    }
    void prime(double timeRatio, double pitchScale) noexcept override {
        setTimeRatio(timeRatio);
        setPitchScale(pitchScale);
        const int pad = static_cast<int>(rb_.getPreferredStartPad());
        for (int fed = 0; fed < pad;) {
            const int n = std::min(pad - fed, maxFeed_);
            rb_.process(zeroPtr_.data(), static_cast<size_t>(n), false);
            fed += n;
        }
        startDelay_ = static_cast<int>(rb_.getStartDelay()) + static_cast<int>(std::lround(extraDelay_ * timeRatio));
    }
    // Only real changes reach the engine: compare with what was last asked for (R2 treats every
    // setTimeRatio call as a change, and calling it every block cost 2.7 dB on a steady tone).
    void setTimeRatio(double r) noexcept override {
        if (r == ratio_) return;
        ratio_ = r;
        rb_.setTimeRatio(r);
    }
    void setPitchScale(double s) noexcept override {
        if (s == pitch_) return;
        pitch_ = s;
        rb_.setPitchScale(s);
    }
    int inputWanted() const noexcept override {
        return std::clamp(static_cast<int>(rb_.getSamplesRequired()), 1, maxFeed_);
    }
    void feed(const float* const* in, int n) noexcept override { rb_.process(in, static_cast<size_t>(n), false); }
    int available() const noexcept override { return std::max(0, rb_.available()); }
    int retrieve(float* const* out, int n) noexcept override {
        return static_cast<int>(rb_.retrieve(out, static_cast<size_t>(n)));
    }
    int startDelay() const noexcept override { return startDelay_; }
    Method method() const noexcept override { return finer_ ? Method::Rb3 : Method::Rb2; }

private:
    bool finer_;
    RubberBand::RubberBandStretcher rb_;
    double ratio_, pitch_;
    int extraDelay_ = 0; // latency beyond getStartDelay(), measured at creation (output frames at ratio 1)
    std::vector<float> zeros_;
    std::vector<const float*> zeroPtr_;
    int startDelay_ = 0;
};

class SoundTouchEngine final : public Stretcher {
public:
    SoundTouchEngine(int channels, double sampleRate, int maxFeed, double ratio, double pitch) {
        channels_ = channels;
        maxFeed_ = maxFeed;
        st_.setChannels(static_cast<unsigned>(channels));
        st_.setSampleRate(static_cast<unsigned>(std::lround(sampleRate)));
        st_.setPitch(pitch);
        st_.setTempo(1.0 / ratio);
        ratio_ = ratio;
        pitch_ = pitch;
        inter_.assign(static_cast<size_t>(channels * std::max(maxFeed, 8192)), 0.0f);
        // Warm the internal FIFOs to their working size here, not on the audio thread: run a
        // few seconds of silence through at the extreme ratios, then clear.
        for (double t : {0.25, 4.0, 1.0 / ratio}) {
            st_.setTempo(t);
            for (int i = 0; i < 40; ++i) {
                std::fill(inter_.begin(), inter_.begin() + channels * maxFeed, 0.0f);
                st_.putSamples(inter_.data(), static_cast<unsigned>(maxFeed));
                while (st_.receiveSamples(inter_.data(), static_cast<unsigned>(maxFeed)) > 0) {}
            }
        }
        st_.clear();
        st_.setTempo(1.0 / ratio);
    }
    void prime(double timeRatio, double pitchScale) noexcept override {
        setTimeRatio(timeRatio);
        setPitchScale(pitchScale);
        // The initial latency's worth of silence, trimmed again at the output.
        const int pad = st_.getSetting(SETTING_INITIAL_LATENCY);
        std::fill(inter_.begin(), inter_.end(), 0.0f);
        for (int fed = 0; fed < pad;) {
            const int n = std::min(pad - fed, maxFeed_);
            st_.putSamples(inter_.data(), static_cast<unsigned>(n));
            fed += n;
        }
        startDelay_ = static_cast<int>(std::lround(pad * timeRatio));
    }
    void setTimeRatio(double r) noexcept override {
        if (r != ratio_) { ratio_ = r; st_.setTempo(1.0 / r); }
    }
    void setPitchScale(double s) noexcept override {
        if (s != pitch_) { pitch_ = s; st_.setPitch(s); }
    }
    int inputWanted() const noexcept override {
        return std::clamp(st_.getSetting(SETTING_NOMINAL_INPUT_SEQUENCE), 64, maxFeed_);
    }
    void feed(const float* const* in, int n) noexcept override {
        for (int i = 0; i < n; ++i)
            for (int c = 0; c < channels_; ++c) inter_[static_cast<size_t>(i * channels_ + c)] = in[c][i];
        st_.putSamples(inter_.data(), static_cast<unsigned>(n));
    }
    int available() const noexcept override { return static_cast<int>(st_.numSamples()); }
    int retrieve(float* const* out, int n) noexcept override {
        const int got = static_cast<int>(st_.receiveSamples(inter_.data(), static_cast<unsigned>(std::min(n, maxFeed_))));
        for (int i = 0; i < got; ++i)
            for (int c = 0; c < channels_; ++c) out[c][i] = inter_[static_cast<size_t>(i * channels_ + c)];
        return got;
    }
    int startDelay() const noexcept override { return startDelay_; }
    Method method() const noexcept override { return Method::Wsola; }

private:
    mutable soundtouch::SoundTouch st_;
    std::vector<float> inter_;
    double ratio_ = 1.0, pitch_ = 1.0;
    int startDelay_ = 0;
};

} // namespace

std::unique_ptr<Stretcher> Stretcher::create(Method method, int channels, double sampleRate, int maxFeed,
                                             double initialTimeRatio, double pitchScale) {
    switch (method) {
    case Method::Rate: return nullptr;
    case Method::Rb2: return std::make_unique<RubberBandEngine>(false, channels, sampleRate, maxFeed, initialTimeRatio, pitchScale);
    case Method::Rb3: return std::make_unique<RubberBandEngine>(true, channels, sampleRate, maxFeed, initialTimeRatio, pitchScale);
    case Method::Wsola: return std::make_unique<SoundTouchEngine>(channels, sampleRate, maxFeed, initialTimeRatio, pitchScale);
    }
    return nullptr;
}

} // namespace loopd::stretch
