#pragma once
// The tempo of an incoming MIDI clock (24 ticks per quarter note) from its ticks' sample times.
// A straight line is fitted (least squares) through the last kWindow ticks: on a steady clock
// the jitter of single ticks (an ALSA timestamp, a USB frame) averages out and the tempo holds
// within a few thousandths of a BPM. Each tick is numbered by its time (a tick lost on the way
// — a cycle the sender missed — leaves a hole in the numbers, not a wrong slope). A tick off
// the fitted line by more than kChange of a tick is kept out of the window (a late one, a
// stale buffer's duplicate); three among the last six heard are a new tempo (a doubled one
// puts every other tick off the line): the window starts again from the last three heard,
// so a new tempo is followed within a few ticks. A gap longer than kGapTicks ticks (the
// clock stopped, the cable was pulled) also starts again. slip() moves the history when the
// driver's clock ran ahead of the engine's timeline (an xrun): the ticks' intervals stay true.
//
// Threads: [audio]-safe (no allocation), one owner.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace loopd::midi {

class MidiClockFollower {
public:
    static constexpr int kWindow = 96;        // four beats
    static constexpr int kMinTicks = 6;       // a quarter beat before a tempo is given
    static constexpr double kChange = 0.08;   // 8 % of a tick off the line: an outlier, or a new tempo
    static constexpr double kGapTicks = 8.0;

    void reset() noexcept { count_ = 0; offBits_ = 0; prevHole_ = false; }

    // A tick at `sample` (non-decreasing). True when a tempo is known (bpm()).
    bool tick(int64_t sample, double sampleRate) noexcept {
        heard_[heardCount_++ % 3] = sample;
        if (count_ == 0) {
            push(sample, 0);
            return false;
        }
        const Tick& last = at(count_ - 1);
        const double gap = static_cast<double>(sample - last.sample);
        const double period = count_ >= kMinTicks ? period_ : gap;
        if (count_ >= 2 && gap > kGapTicks * period) {
            reset();
            push(sample, 0);
            return false;
        }
        if (count_ < kMinTicks) {
            push(sample, last.index + 1);
            fit(sampleRate);
            return count_ >= kMinTicks;
        }
        // Its number from its time; how far it is from where the fitted line puts that number.
        // One hole is a lost tick; holes after holes are a slower clock (off the line).
        const int64_t step = std::max<int64_t>(1, std::llround(gap / period_));
        const bool hole = std::llround(static_cast<double>(sample - prevSample_) / period_) >= 2;
        const bool holes = hole && prevHole_;
        prevHole_ = hole;
        prevSample_ = sample;
        const double predicted = static_cast<double>(last.sample) + static_cast<double>(step) * period_;
        const bool on = !holes && std::fabs(static_cast<double>(sample) - predicted) <= kChange * period_;
        offBits_ = ((offBits_ << 1) | (on ? 0u : 1u)) & 0x3fu;
        if (on) {
            push(sample, last.index + step);
            fit(sampleRate);
            return true;
        }
        if (std::popcount(offBits_) >= 3) { // a new tempo: the last three ticks heard start the window again
            const int64_t a = heard_[(heardCount_ - 3) % 3], b = heard_[(heardCount_ - 2) % 3], c = heard_[(heardCount_ - 1) % 3];
            reset();
            push(a, 0);
            push(b, 1);
            push(c, 2);
            fit(sampleRate);
        }
        return count_ >= kMinTicks;
    }
    // The driver's clock ran `frames` ahead of the engine's timeline (a missed cycle): later
    // ticks arrive that much earlier on the timeline; so does the history now.
    void slip(int64_t frames) noexcept {
        for (int i = 0; i < count_; ++i) at(i).sample -= frames;
        for (int64_t& s : heard_) s -= frames;
        prevSample_ -= frames;
    }
    double bpm() const noexcept { return bpm_; }
    double samplesPerTick() const noexcept { return period_; }
    int ticks() const noexcept { return count_; }

private:
    struct Tick {
        int64_t sample = 0;
        int64_t index = 0;
    };
    Tick& at(int i) noexcept { return ticks_[(head_ + kWindow - count_ + i) % kWindow]; }
    void push(int64_t sample, int64_t index) noexcept {
        prevSample_ = sample;
        ticks_[head_] = Tick{sample, index};
        head_ = (head_ + 1) % kWindow;
        if (count_ < kWindow) ++count_;
    }
    void fit(double sampleRate) noexcept {
        if (count_ < 2) return;
        // x = tick number, y = sample, both relative to the oldest in the window.
        const Tick origin = at(0);
        const int n = count_;
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (int i = 0; i < n; ++i) {
            const Tick& t = at(i);
            const double x = static_cast<double>(t.index - origin.index), y = static_cast<double>(t.sample - origin.sample);
            sx += x; sy += y; sxx += x * x; sxy += x * y;
        }
        const double den = n * sxx - sx * sx;
        if (den <= 0) return;
        const double slope = (n * sxy - sx * sy) / den;
        if (!(slope > 0)) return;
        period_ = slope;
        bpm_ = 60.0 * sampleRate / (24.0 * slope);
    }

    Tick ticks_[kWindow] = {};
    int64_t heard_[3] = {};  // the last three ticks heard (a new tempo starts from them)
    uint64_t heardCount_ = 0;
    unsigned offBits_ = 0;    // of the last six ticks heard, those off the line
    int64_t prevSample_ = 0; // the last tick heard, in the window or not
    bool prevHole_ = false;
    int head_ = 0, count_ = 0;
    double period_ = 0.0, bpm_ = 0.0;
};

} // namespace loopd::midi
