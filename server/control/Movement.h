#pragma once
// The movement controller's map from a movement value to a target tempo, and its timing.
// Default (docs/OSC.md, Movement controller): < 0.02 → 105, < 0.05 → 110, < 0.10 → 115, < 0.15 → 118, then 118 → 130
// progressively up to 0.6. Values above 1 are taken as on a 0..inputMax scale (e.g. percent).
#include <string>
#include <utility>
#include <vector>

namespace loopd {

struct MovementConfig {
    std::vector<std::pair<double, double>> steps = {{0.02, 105.0}, {0.05, 110.0}, {0.10, 115.0}, {0.15, 118.0}};
    double highMaxBpm = 130.0;  // reached at maxValue
    double maxValue = 0.6;
    double inputMax = 100.0;    // values > 1 are divided by this
    double upSeconds = 30.0;    // 99 % of a rising transition
    double downSeconds = 30.0;  // 99 % of a falling transition

    // [any] Normalised movement (0..1) for a raw value; NaN/negative are refused by the caller.
    double normalise(double v) const noexcept {
        if (v > 1.0) v /= inputMax;
        return v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v;
    }
    // [any] Target BPM for a normalised movement value.
    double targetFor(double v) const noexcept {
        for (const auto& [threshold, bpm] : steps)
            if (v < threshold) return bpm;
        const double from = steps.empty() ? 0.0 : steps.back().first;
        const double base = steps.empty() ? highMaxBpm : steps.back().second;
        if (maxValue <= from) return highMaxBpm;
        const double t = (v - from) / (maxValue - from);
        return base + (highMaxBpm - base) * (t < 0.0 ? 0.0 : t > 1.0 ? 1.0 : t);
    }
};

// The analysis tempo source (/tempo_source analysis): the range estimates are folded into
// (--bpm-range), the confidence an estimate needs to move the clock, and how the clock follows it
// (the movement controller's law: 99 % of a transition in these seconds).
struct AnalysisConfig {
    double bpmLow = 70.0, bpmHigh = 180.0;
    double minConfidence = 0.5;
    double upSeconds = 8.0, downSeconds = 8.0;
    // The live analysis rests through digital silence (LiveAnalysis.h); off only to test that
    // resting changes nothing.
    bool restInSilence = true;
};

// Settings from --config (loopd's JSON) or --bpm-config (Crowdstream's bpm_config.json with a
// "movement_bpm" object). Fields absent from the file keep their values.
struct FileConfig {
    double bpm = 0.0;        // 0: not given
    int meter = 0;
    MovementConfig movement;
    AnalysisConfig analysis;
    bool analysisRangeGiven = false; // the file set analysis.bpm_range (--bpm-range overrides it)
    std::vector<std::string> warnings;
};

// [control] Throws std::runtime_error with the reason (file, JSON error, bad value).
void loadConfigFile(const std::string& path, FileConfig& config);

} // namespace loopd
