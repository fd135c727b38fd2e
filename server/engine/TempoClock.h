#pragma once
// The one tempo clock: BPM, meter, beat position, advanced by the audio thread sample by sample
// of rendered time. Tempo moves three ways: a jump, a linear ramp (`/tempo bpm seconds`), or an
// exponential approach to a target (the movement controller) whose 99 % time is given in
// seconds and is exact at every block boundary whatever the block size (closed-form update).
// All methods are [audio]-safe: no allocation, no locks.
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace loopd {

class TempoClock {
public:
    void prepare(double sampleRate, double bpm, int beatsPerBar) noexcept {
        sampleRate_ = sampleRate;
        bpm_ = bpm;
        beatsPerBar_ = beatsPerBar;
        beats_ = 0.0;
        mode_ = Mode::Steady;
    }

    void jump(double bpm) noexcept { bpm_ = bpm; mode_ = Mode::Steady; }
    void ramp(double bpm, double seconds) noexcept {
        if (seconds <= 0.0 || bpm == bpm_) { jump(bpm); return; }
        target_ = bpm;
        rampPerSecond_ = (bpm - bpm_) / seconds;
        mode_ = Mode::Ramp;
    }
    // Exponential approach: 99 % of the way in up99Seconds when rising, down99Seconds when falling.
    void follow(double bpm, double up99Seconds, double down99Seconds) noexcept {
        target_ = bpm;
        const double t99 = bpm >= bpm_ ? up99Seconds : down99Seconds;
        tau_ = std::max(1e-3, t99) / std::log(100.0);
        mode_ = Mode::Follow;
    }
    // A tempo command: mode 0 jump, 1 linear ramp over `seconds`, 2 follow (see cmd::Tempo).
    void apply(uint8_t mode, double bpm, double seconds, double downSeconds) noexcept {
        if (mode == 0) jump(bpm);
        else if (mode == 1) ramp(bpm, seconds);
        else follow(bpm, seconds, downSeconds);
    }
    // Slide the beat position by `beats` (either way) over `seconds`, the tempo unchanged: a phase
    // pull onto beats heard elsewhere. The slide never changes the pace by more than 2 % — what a
    // follower's beat lock corrects per block (Player::lockedTempoFactor), so followers slide with
    // the clock instead of falling behind it; a new nudge replaces what is left of the last.
    static constexpr double kNudgePace = 0.02;
    void nudge(double beats, double seconds) noexcept {
        const double fastest = kNudgePace * bpm_ / 60.0; // beats per second of slide at most
        nudgeLeft_ = beats;
        nudgeRate_ = std::min(std::fabs(beats) / std::max(1e-3, seconds), fastest);
    }
    double nudgeLeft() const noexcept { return nudgeLeft_; }
    void setMeter(int beatsPerBar) noexcept { beatsPerBar_ = beatsPerBar; }
    void resetPosition() noexcept { beats_ = 0.0; }
    // The beat position now (negative: beat 0 is still ahead, e.g. on a MIDI Start's first tick).
    void setPosition(double beats) noexcept { beats_ = beats; }

    // Advance by numFrames; onBeat(beatIndex, frameOffset) for every whole beat crossed, where
    // frameOffset (0..numFrames) is the first frame at or after the beat (numFrames: the first
    // frame of the next segment, for a beat that falls exactly on the boundary).
    template <typename OnBeat>
    void advance(int numFrames, OnBeat&& onBeat) noexcept {
        const double dt = numFrames / sampleRate_;
        double beatsAdvanced = 0.0;
        switch (mode_) {
        case Mode::Steady:
            beatsAdvanced = bpm_ * dt / 60.0;
            break;
        case Mode::Ramp: {
            const double left = (target_ - bpm_) / rampPerSecond_; // seconds to the end of the ramp
            if (!(left > dt)) {
                beatsAdvanced = ((bpm_ + target_) * 0.5 * left + target_ * (dt - std::max(0.0, left))) / 60.0;
                bpm_ = target_;
                mode_ = Mode::Steady;
            } else {
                const double end = bpm_ + rampPerSecond_ * dt;
                beatsAdvanced = (bpm_ + end) * 0.5 * dt / 60.0;
                bpm_ = end;
            }
            break;
        }
        case Mode::Follow: {
            const double decay = std::exp(-dt / tau_);
            beatsAdvanced = (target_ * dt + (bpm_ - target_) * tau_ * (1.0 - decay)) / 60.0;
            bpm_ = target_ + (bpm_ - target_) * decay;
            break;
        }
        }
        if (nudgeLeft_ != 0.0) {
            const double step = std::min(std::fabs(nudgeLeft_), nudgeRate_ * dt);
            const double signedStep = nudgeLeft_ > 0.0 ? step : -step;
            beatsAdvanced += signedStep;
            nudgeLeft_ = std::fabs(nudgeLeft_ - signedStep) < 1e-12 ? 0.0 : nudgeLeft_ - signedStep;
        }
        const double before = beats_;
        beats_ += beatsAdvanced;
        // Whole beats crossed in (before, beats_]: place them by linear interpolation.
        for (double b = std::floor(before) + 1.0; b <= beats_; b += 1.0) {
            const double frac = beatsAdvanced > 0 ? (b - before) / beatsAdvanced : 0.0;
            // The tolerance absorbs the rounding of the accumulated beat position.
            int offset = static_cast<int>(std::ceil(frac * numFrames - 1e-6));
            if (offset > numFrames) offset = numFrames;
            onBeat(static_cast<int64_t>(b), offset < 0 ? 0 : offset);
        }
    }

    double bpm() const noexcept { return bpm_; }
    double beats() const noexcept { return beats_; }
    int beatsPerBar() const noexcept { return beatsPerBar_; }
    double target() const noexcept { return mode_ == Mode::Steady ? bpm_ : target_; }

private:
    enum class Mode : uint8_t { Steady, Ramp, Follow };
    double sampleRate_ = 48000.0;
    double bpm_ = 120.0;
    double beats_ = 0.0;
    int beatsPerBar_ = 4;
    Mode mode_ = Mode::Steady;
    double target_ = 120.0;
    double rampPerSecond_ = 0.0;
    double tau_ = 1.0;
    double nudgeLeft_ = 0.0, nudgeRate_ = 0.0;
};

// The clock's future as far as it is known: its state now plus the tempo commands scheduled
// (timetagged) ahead of time, in the order they will run. A stretched follower hears its input
// a stretcher's latency later (R3 ~60 ms); it aims that input at the tempo of the moment it will
// sound, so a tempo change sent ahead lands on its sample instead of being chased afterwards.
class TempoForecast {
public:
    struct Change { int64_t sample; uint64_t seq; double bpm, seconds, downSeconds; uint8_t mode; };
    static constexpr int kMax = 32;

    // [audio] A scheduled tempo command (false: the forecast is full; that change is not foreseen).
    bool add(const Change& c) noexcept {
        if (count_ == kMax) return false;
        int i = count_++;
        for (; i > 0 && (changes_[i - 1].sample > c.sample || (changes_[i - 1].sample == c.sample && changes_[i - 1].seq > c.seq)); --i)
            changes_[i] = changes_[i - 1];
        changes_[i] = c;
        return true;
    }
    // [audio] The scheduled command `seq` ran (or will not): it is the clock's present now.
    void remove(uint64_t seq) noexcept {
        for (int i = 0; i < count_; ++i)
            if (changes_[i].seq == seq) {
                for (int k = i + 1; k < count_; ++k) changes_[k - 1] = changes_[k];
                --count_;
                return;
            }
    }
    int size() const noexcept { return count_; }

    // Beats and tempo at absolute sample `at`, from `clock` as it stands at sample `from`.
    void predict(const TempoClock& clock, int64_t from, int64_t at, double& beats, double& bpm) const noexcept {
        TempoClock c = clock;
        auto none = [](int64_t, int) {};
        for (int i = 0; i < count_ && changes_[i].sample <= at; ++i) {
            const Change& ch = changes_[i];
            if (ch.sample > from) { c.advance(static_cast<int>(ch.sample - from), none); from = ch.sample; }
            c.apply(ch.mode, ch.bpm, ch.seconds, ch.downSeconds);
        }
        if (at > from) c.advance(static_cast<int>(at - from), none);
        beats = c.beats();
        bpm = c.bpm();
    }

private:
    Change changes_[kMax] = {};
    int count_ = 0;
};

} // namespace loopd
