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
                  // material (the default loses cycles of a steady tone: 437.6 Hz for 440 at
                  // 1.25); the short window keeps the level when the ratio changes mid-stream
                  // (mixed with the standard window fell 2.7 dB after a change, measured).
                  (finer ? RubberBand::RubberBandStretcher::OptionEngineFiner
                         : RubberBand::RubberBandStretcher::OptionEngineFaster | RubberBand::RubberBandStretcher::OptionTransientsMixed |
                               RubberBand::RubberBandStretcher::OptionWindowShort) |
                  RubberBand::RubberBandStretcher::OptionPitchHighConsistency,
              ratio, pitch),
          ratio_(ratio), pitch_(pitch) {
        channels_ = channels;
        maxFeed_ = maxFeed;
        // The largest process() size first, as the header prescribes.
        rb_.setMaxProcessSize(static_cast<size_t>(maxFeed));
        zeros_.assign(static_cast<size_t>(maxFeed), 0.0f);
        zeroPtr_.assign(static_cast<size_t>(channels), zeros_.data());
        planar_.assign(static_cast<size_t>(channels * maxFeed), 0.0f);
        for (int c = 0; c < channels; ++c) planarPtr_.push_back(planar_.data() + static_cast<size_t>(c * maxFeed));
    }
    void prime(double timeRatio, double pitchScale) noexcept override {
        rb_.reset(); // a voice primed again (a player back from being shed) starts afresh
        setTimeRatio(timeRatio);
        setPitchScale(pitchScale);
        const int pad = static_cast<int>(rb_.getPreferredStartPad());
        for (int fed = 0; fed < pad;) {
            const int n = std::min(pad - fed, maxFeed_);
            rb_.process(zeroPtr_.data(), static_cast<size_t>(n), false);
            fed += n;
        }
        startDelay_ = static_cast<int>(rb_.getStartDelay());
    }
    // Only real changes reach the engine: compare with what was last asked for.
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
    // Rubber Band is planar: whole pieces of up to maxFeed frames through one scratch (the same
    // process() sizes as the planar calls).
    void feedInterleaved(const float* in, int n) noexcept override {
        for (int done = 0; done < n;) {
            const int k = std::min(n - done, maxFeed_);
            for (int i = 0; i < k; ++i)
                for (int c = 0; c < channels_; ++c) planarPtr_[static_cast<size_t>(c)][i] = in[static_cast<size_t>((done + i) * channels_ + c)];
            rb_.process(planarPtr_.data(), static_cast<size_t>(k), false);
            done += k;
        }
    }
    int retrieveInterleaved(float* out, int n) noexcept override {
        const int got = static_cast<int>(rb_.retrieve(planarPtr_.data(), static_cast<size_t>(std::min(n, maxFeed_))));
        for (int i = 0; i < got; ++i)
            for (int c = 0; c < channels_; ++c) out[static_cast<size_t>(i * channels_ + c)] = planarPtr_[static_cast<size_t>(c)][i];
        return got;
    }
    int startDelay() const noexcept override { return startDelay_; }
    Method method() const noexcept override { return finer_ ? Method::Rb3 : Method::Rb2; }

private:
    bool finer_;
    RubberBand::RubberBandStretcher rb_;
    double ratio_, pitch_;
    std::vector<float> zeros_;
    std::vector<const float*> zeroPtr_;
    std::vector<float> planar_;
    std::vector<float*> planarPtr_;
    int startDelay_ = 0;
};

class SoundTouchEngine final : public Stretcher {
public:
    SoundTouchEngine(int channels, double sampleRate, int maxFeed, double ratio, double pitch) {
        channels_ = channels;
        maxFeed_ = maxFeed;
        sampleRate_ = sampleRate;
        st_.setChannels(static_cast<unsigned>(channels));
        st_.setSampleRate(static_cast<unsigned>(std::lround(sampleRate)));
        // Fixed processing lengths: by default SoundTouch re-tunes them with the tempo, so the
        // audio it holds jumps at a tempo step and followers lose the beat grid.
        st_.setSetting(SETTING_SEQUENCE_MS, 40);
        st_.setSetting(SETTING_SEEKWINDOW_MS, 15);
        st_.setSetting(SETTING_OVERLAP_MS, 8);
        st_.setPitch(pitch);
        useAntiAliasFor(pitch);
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
        st_.clear(); // a voice primed again (a player back from being shed) starts afresh
        // The initial latency's worth of silence, trimmed again at the output.
        const int pad = st_.getSetting(SETTING_INITIAL_LATENCY);
        std::fill(inter_.begin(), inter_.end(), 0.0f);
        for (int fed = 0; fed < pad;) {
            const int n = std::min(pad - fed, maxFeed_);
            st_.putSamples(inter_.data(), static_cast<unsigned>(n));
            fed += n;
        }
        // The pad is input; what it becomes at the output is scaled by the ratio, except what
        // TDStretch holds on its output side: one output sequence less its overlap, not scaled.
        // (Measured with click trains over ratios 0.5 .. 2: without that term the output was
        // 25 ms x (1 - ratio) late, e.g. +3.3 ms at 0.855, -7.4 ms at 1.26.)
        const double held = st_.getSetting(SETTING_NOMINAL_OUTPUT_SEQUENCE) - std::round(st_.getSetting(SETTING_OVERLAP_MS) * sampleRate_ / 1000.0);
        startDelay_ = static_cast<int>(std::lround(pad * timeRatio + held * (1.0 - timeRatio)));
    }
    void setTimeRatio(double r) noexcept override {
        if (r != ratio_) { ratio_ = r; st_.setTempo(1.0 / r); }
    }
    void setPitchScale(double s) noexcept override {
        if (s != pitch_) { pitch_ = s; useAntiAliasFor(s); st_.setPitch(s); }
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
    // SoundTouch works interleaved: straight through.
    void feedInterleaved(const float* in, int n) noexcept override { st_.putSamples(in, static_cast<unsigned>(n)); }
    int retrieveInterleaved(float* out, int n) noexcept override {
        return static_cast<int>(st_.receiveSamples(out, static_cast<unsigned>(n)));
    }
    int startDelay() const noexcept override { return startDelay_; }
    Method method() const noexcept override { return Method::Wsola; }

private:
    // SoundTouch 2.3 runs every sample through its rate transposer, even at pitch 1 (its bypass
    // for rate 1 is compiled out), and the transposer's anti-alias FIR, at rate 1 a windowed sinc
    // cut at Nyquist, which passes the signal (with and without differ by 1.3e-4 at most: test
    // SoundTouch.ItsAntiAliasFilterPassesTheSignalAtPitchOne) for a fifth of a WSOLA voice's cost
    // (perf, loopd_stretch_bench). Off at pitch 1, on for any pitch shift.
    void useAntiAliasFor(double pitch) noexcept { st_.setSetting(SETTING_USE_AA_FILTER, pitch == 1.0 ? 0 : 1); }
    mutable soundtouch::SoundTouch st_;
    std::vector<float> inter_;
    double ratio_ = 1.0, pitch_ = 1.0, sampleRate_ = 48000.0;
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
