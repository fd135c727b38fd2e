#pragma once
// The tempo of an incoming MIDI clock (24 ticks per quarter note) from its ticks' sample times.
// A straight line is fitted (least squares) through the last kWindow ticks: on a steady clock
// the jitter of single ticks (an ALSA timestamp, a USB frame) averages out and the tempo holds
// within a few thousandths of a BPM; when the clock changes tempo the window starts again from
// the ticks that show it (three in a row off the fitted line by more than kChange of a tick),
// so a new tempo is followed within a few ticks. A gap longer than kGapTicks ticks (the clock
// stopped, the cable was pulled) also starts again.
//
// Threads: [audio]-safe (no allocation), one owner.
#include <cmath>
#include <cstdint>

namespace loopd::midi {

class MidiClockFollower {
public:
    static constexpr int kWindow = 96;        // four beats
    static constexpr int kMinTicks = 6;       // a quarter beat before a tempo is given
    static constexpr double kChange = 0.08;   // 8 % of a tick off the line: a new tempo
    static constexpr double kGapTicks = 8.0;

    void reset() noexcept { count_ = 0; off_ = 0; }

    // A tick at `sample` (non-decreasing). True when a tempo is known (bpm()).
    bool tick(int64_t sample, double sampleRate) noexcept {
        if (count_ > 0) {
            const double last = static_cast<double>(samples_[(head_ + kWindow - 1) % kWindow]);
            const double gap = static_cast<double>(sample) - last;
            const double period = count_ >= kMinTicks ? period_ : gap;
            if (count_ >= 2 && gap > kGapTicks * period) reset();
            else if (count_ >= kMinTicks) {
                // How far this tick is from where the fitted line puts it.
                const double predicted = last + period_;
                if (std::fabs(static_cast<double>(sample) - predicted) > kChange * period_) {
                    if (++off_ >= 3) { // a new tempo: keep the last three ticks only
                        int64_t keep[3] = {samples_[(head_ + kWindow - 2) % kWindow], samples_[(head_ + kWindow - 1) % kWindow], sample};
                        count_ = 0;
                        off_ = 0;
                        for (int64_t s : keep) push(s);
                        fit(sampleRate);
                        return count_ >= kMinTicks;
                    }
                } else {
                    off_ = 0;
                }
            }
        }
        push(sample);
        fit(sampleRate);
        return count_ >= kMinTicks;
    }
    double bpm() const noexcept { return bpm_; }
    double samplesPerTick() const noexcept { return period_; }
    int ticks() const noexcept { return count_; }

private:
    void push(int64_t sample) noexcept {
        samples_[head_] = sample;
        head_ = (head_ + 1) % kWindow;
        if (count_ < kWindow) ++count_;
    }
    void fit(double sampleRate) noexcept {
        if (count_ < 2) return;
        // x = tick index 0..n-1 (oldest first), y = sample relative to the oldest.
        const int n = count_;
        const int first = (head_ + kWindow - n) % kWindow;
        const auto origin = static_cast<double>(samples_[first]);
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (int i = 0; i < n; ++i) {
            const double x = i, y = static_cast<double>(samples_[(first + i) % kWindow]) - origin;
            sx += x; sy += y; sxx += x * x; sxy += x * y;
        }
        const double den = n * sxx - sx * sx;
        if (den <= 0) return;
        const double slope = (n * sxy - sx * sy) / den;
        if (!(slope > 0)) return;
        period_ = slope;
        bpm_ = 60.0 * sampleRate / (24.0 * slope);
    }

    int64_t samples_[kWindow] = {};
    int head_ = 0, count_ = 0, off_ = 0;
    double period_ = 0.0, bpm_ = 0.0;
};

} // namespace loopd::midi
