// Tempo and beats of a stream of audio (TempoTracker.h).
#include "server/analysis/TempoTracker.h"

#include <dsp/onsets/DetectionFunction.h>
#include <dsp/tempotracking/TempoTrackV2.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace loopd {

TempoTracker::TempoTracker(double sampleRate, double bpmLow, double bpmHigh, double keepSeconds)
    : sampleRate_(sampleRate), lo_(bpmLow), hi_(bpmHigh),
      keepValues_(static_cast<size_t>(std::max(1.0, keepSeconds) * sampleRate / kStep) + 1),
      frame_(2 * kStep, 0.0) {
    DFConfig c{};
    c.stepSize = kStep;
    c.frameLength = 2 * kStep;
    c.DFType = DF_COMPLEXSD; // complex-domain spectral difference: QM's default for beats
    c.dbRise = 3.0;
    c.adaptiveWhitening = false;
    c.whiteningRelaxCoeff = -1.0;
    c.whiteningFloor = -1.0;
    df_ = std::make_unique<DetectionFunction>(c);
}

TempoTracker::~TempoTracker() = default;

void TempoTracker::push(const float* x, int n) {
    for (int i = 0; i < n;) {
        const int take = std::min(n - i, 2 * kStep - filled_);
        for (int k = 0; k < take; ++k) frame_[static_cast<size_t>(filled_ + k)] = x[i + k];
        filled_ += take;
        i += take;
        samplesIn_ += take;
        if (filled_ < 2 * kStep) break;
        values_.push_back(df_->processTimeDomain(frame_.data()));
        if (values_.size() > keepValues_) { values_.pop_front(); ++firstValue_; }
        std::memmove(frame_.data(), frame_.data() + kStep, sizeof(double) * kStep); // frames overlap by half
        filled_ = kStep;
    }
}

double TempoTracker::fold(double bpm, double lo, double hi) noexcept {
    if (!(bpm > 0.0)) return 0.0;
    while (bpm < lo) bpm *= 2.0;
    while (bpm > hi) bpm /= 2.0;
    return bpm;
}

double TempoTracker::onsetOffset(const std::deque<int64_t>& onsets, double at, double reach) {
    auto it = std::lower_bound(onsets.begin(), onsets.end(), static_cast<int64_t>(std::floor(at - reach)));
    double best = reach + 1.0;
    for (; it != onsets.end() && static_cast<double>(*it) <= at + reach; ++it)
        if (std::fabs(static_cast<double>(*it) - at) < std::fabs(best)) best = static_cast<double>(*it) - at;
    return std::fabs(best) <= reach ? best : std::nan("");
}

double TempoTracker::snapToOnsets(double phase, double period, const std::deque<int64_t>& onsets, double sampleRate, int beats) {
    if (!(period > 0.0) || onsets.empty()) return phase;
    const double reach = std::min(0.030 * sampleRate, period / 6.0);
    std::vector<double> offsets;
    for (int k = 0; k < beats; ++k) {
        if (const double d = onsetOffset(onsets, phase - k * period, reach); !std::isnan(d)) offsets.push_back(d);
    }
    if (offsets.size() < 4) return phase;
    std::nth_element(offsets.begin(), offsets.begin() + static_cast<std::ptrdiff_t>(offsets.size() / 2), offsets.end());
    return phase + offsets[offsets.size() / 2];
}

TempoTracker::Estimate TempoTracker::estimate(double seconds, double hintBpm) const {
    const int64_t want = static_cast<int64_t>(seconds * sampleRate_ / kStep);
    const int64_t end = firstValue_ + static_cast<int64_t>(values_.size());
    return estimateSteps(end - want, end, hintBpm);
}

TempoTracker::Estimate TempoTracker::estimateBetween(double fromSeconds, double toSeconds, double hintBpm) const {
    return estimateSteps(static_cast<int64_t>(fromSeconds * sampleRate_ / kStep), static_cast<int64_t>(toSeconds * sampleRate_ / kStep), hintBpm);
}

TempoTracker::Estimate TempoTracker::estimateSteps(int64_t from, int64_t end, double hintBpm) const {
    Estimate e;
    // The detection function's first two values are zero by construction: left out.
    from = std::max<int64_t>(from, std::max<int64_t>(firstValue_, 2));
    end = std::min<int64_t>(end, firstValue_ + static_cast<int64_t>(values_.size()));
    if (end - from < static_cast<int64_t>(3.0 * sampleRate_ / kStep)) return e; // under 3 s: too little
    std::vector<double> df(values_.begin() + (from - firstValue_), values_.begin() + (end - firstValue_));
    if (*std::max_element(df.begin(), df.end()) <= 0.0) return e; // silence
    TempoTrackV2 tt(static_cast<float>(sampleRate_), kStep);
    std::vector<double> period(df.size(), 0.0), tempi, beats; // (TempoTrackV2 wants the period sized)
    if (hintBpm > 0.0) tt.calculateBeatPeriod(df, period, tempi, hintBpm, true);
    else tt.calculateBeatPeriod(df, period, tempi);
    tt.calculateBeats(df, period, beats);
    if (beats.size() < 4) return e;
    // Beat k of the tracker is detection-function value k, which rises in the frame that starts
    // k steps in: half a step later is where a click track's clicks fall on average (measured:
    // a full step put them 5.5 ms late). Within a step only: a finer beat time needs the onsets.
    e.beats.reserve(beats.size());
    for (double b : beats) e.beats.push_back(static_cast<int64_t>(std::llround((static_cast<double>(from) + b + 0.5) * kStep)));
    // The tempo: the least-squares slope of beat time against beat number. The tracker's first
    // and last beats lean on half a context (at a window's edges it misplaces one now and then:
    // 8 s windows of a 90 BPM loop read 91.5 with them), so the line is fitted to the inner beats,
    // then once more without any beat more than a tenth of a beat off it.
    std::vector<double> t;
    for (double b : beats) t.push_back(b * kStep / sampleRate_);
    if (t.size() >= 8) t = std::vector<double>(t.begin() + 1, t.end() - 1);
    std::vector<double> idx(t.size());
    for (size_t i = 0; i < t.size(); ++i) idx[i] = static_cast<double>(i);
    double slope = 0.0, icept = 0.0;
    auto fit = [&] {
        const auto n = static_cast<double>(t.size());
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (size_t i = 0; i < t.size(); ++i) { sx += idx[i]; sy += t[i]; sxx += idx[i] * idx[i]; sxy += idx[i] * t[i]; }
        slope = (n * sxy - sx * sy) / (n * sxx - sx * sx); // seconds per beat
        icept = (sy - slope * sx) / n;
    };
    fit();
    if (!(slope > 0.0)) return e;
    {
        std::vector<double> keptT, keptI;
        for (size_t i = 0; i < t.size(); ++i)
            if (std::fabs(t[i] - (icept + slope * idx[i])) <= 0.1 * slope) { keptT.push_back(t[i]); keptI.push_back(idx[i]); }
        if (keptT.size() >= 4 && keptT.size() < t.size()) { t.swap(keptT); idx.swap(keptI); fit(); }
    }
    if (!(slope > 0.0)) return e;
    // Confidence: how far the beats stray from that line, against a tenth of a beat.
    double ss = 0.0;
    for (size_t i = 0; i < t.size(); ++i) {
        const double r = t[i] - (icept + slope * idx[i]);
        ss += r * r;
    }
    const double rms = std::sqrt(ss / static_cast<double>(t.size()));
    e.confidence = std::clamp(1.0 - rms / (0.1 * slope), 0.0, 1.0);
    e.bpm = fold(60.0 / slope, lo_, hi_);
    e.phaseSample = (static_cast<double>(from) + 0.5) * kStep + (icept + slope * idx.back()) * sampleRate_;
    e.beatPeriod = slope * sampleRate_;
    return e;
}

} // namespace loopd
