#pragma once
// Tempo and beats of a stream of audio: qm-dsp's complex-domain detection function (one value
// per 512-sample step) and its TempoTrackV2 beat tracker over a window of it; the tempo is the
// slope of the tracked beats (a least-squares line through beat number → time), folded into
// [lo, hi] BPM. On synthetic drum loops 8 s of input give 90.00, 123.01, 140.05 and 174.00 BPM
// (aubio's tracker on the same loops: 90.7, 124.7, 141.8 and 87.7 — half — after 12 s).
//
// Threads: not the audio thread (it allocates); one thread at a time.
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

class DetectionFunction;

namespace loopd {

class TempoTracker {
public:
    static constexpr int kStep = 512; // detection-function step (10.7 ms at 48 kHz)

    TempoTracker(double sampleRate, double bpmLow = 70.0, double bpmHigh = 180.0, double keepSeconds = 30.0);
    ~TempoTracker();
    TempoTracker(const TempoTracker&) = delete;
    TempoTracker& operator=(const TempoTracker&) = delete;

    // Mono samples, in order (any count per call).
    void push(const float* x, int n);
    int64_t samplesIn() const noexcept { return samplesIn_; }

    struct Estimate {
        double bpm = 0.0;         // 0: no tempo (too little input, or no beats in it)
        double confidence = 0.0;  // 0..1: how well the beats sit on one straight tempo line
        std::vector<int64_t> beats; // sample positions (from the first sample pushed) of the beats
        // The last beat as the fitted tempo line places it (finer than one beat's 512-sample step:
        // the line averages them all), in samples from the first sample pushed; -1 with no tempo.
        // A tempo folded down from twice the tracker's may put it on an off-beat.
        double phaseSample = -1.0;
        double beatPeriod = 0.0; // samples between the tracked beats (the line's slope; before folding)
    };
    // Beats and tempo of the last `seconds` of input (all that is kept when longer). hintBpm > 0:
    // the tracker's tempo is constrained around it (qm-dsp's inputtempo/constraintempo): a whole
    // file tracked alone may settle on half the tempo its 8 s windows hear (174 → 87).
    Estimate estimate(double seconds, double hintBpm = 0.0) const;
    // The same for the input between two times (seconds from the first sample pushed).
    Estimate estimateBetween(double fromSeconds, double toSeconds, double hintBpm = 0.0) const;

    static double fold(double bpm, double lo, double hi) noexcept;

    // A beat phase (a beat's sample) moved onto the onsets heard: the median distance from the
    // last `beats` beats of the grid (phase - k x period) to the onset nearest each, counting only
    // onsets within 30 ms (and a sixth of a beat); unchanged with fewer than four such beats.
    // `onsets`: sample positions, ascending.
    static double snapToOnsets(double phase, double period, const std::deque<int64_t>& onsets, double sampleRate, int beats = 16);
    // How far the onset nearest `at` lies from it (samples, either way), if one lies within
    // `reach`; NaN when none does. `onsets`: ascending.
    static double onsetOffset(const std::deque<int64_t>& onsets, double at, double reach);

private:
    Estimate estimateSteps(int64_t from, int64_t end, double hintBpm) const;
    double sampleRate_, lo_, hi_;
    size_t keepValues_;
    std::unique_ptr<DetectionFunction> df_;
    std::vector<double> frame_;     // 2 x kStep samples: the detection function's window
    int filled_ = 0;                // samples of frame_ filled
    std::deque<double> values_;     // detection function, one per step
    int64_t firstValue_ = 0;        // step index of values_.front()
    int64_t samplesIn_ = 0;
};

} // namespace loopd
