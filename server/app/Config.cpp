#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>

#include "server/control/Movement.h"

namespace loopd {
namespace {
using json = nlohmann::json;

double number(const json& j, const char* key, double lo, double hi, const std::string& where) {
    const json& v = j.at(key);
    if (!v.is_number()) throw std::runtime_error(where + "." + key + " must be a number");
    const double d = v.get<double>();
    if (!std::isfinite(d) || d < lo || d > hi)
        throw std::runtime_error(where + "." + key + " = " + std::to_string(d) + " is out of range (" + std::to_string(lo) + ".." + std::to_string(hi) + ")");
    return d;
}

// Crowdstream's bpm_config.json: {"movement_bpm": {"movement_max_value", "thresholds": {...},
// "bpm_targets": {...}, "smoothing": {"transition_time_seconds", ...}}}.
void readCrowdstream(const json& m, FileConfig& c) {
    MovementConfig& mv = c.movement;
    const std::string w = "movement_bpm";
    if (m.contains("movement_max_value")) mv.maxValue = number(m, "movement_max_value", 0.0, 1.0, w);
    if (m.contains("thresholds") && m.contains("bpm_targets")) {
        const json& t = m.at("thresholds");
        const json& b = m.at("bpm_targets");
        static const char* names[] = {"very_very_low", "very_low", "low", "medium"};
        std::vector<std::pair<double, double>> steps;
        for (const char* n : names) {
            if (!t.contains(n) || !b.contains(n)) continue;
            steps.emplace_back(number(t, n, 0.0, 1.0, w + ".thresholds"), number(b, n, 20.0, 400.0, w + ".bpm_targets"));
        }
        // The original gave "medium" the same threshold as "low", which made its 118 BPM step
        // unreachable; loopd puts it back at 0.15.
        if (steps.size() == 4 && steps[3].first <= steps[2].first) {
            c.warnings.push_back("movement_bpm.thresholds.medium (" + std::to_string(steps[3].first) +
                                 ") is not above 'low'; using 0.15 so that the medium step is reachable");
            steps[3].first = 0.15;
        }
        if (!steps.empty()) mv.steps = steps;
        if (b.contains("high_max")) mv.highMaxBpm = number(b, "high_max", 20.0, 400.0, w + ".bpm_targets");
    }
    if (m.contains("smoothing")) {
        const json& s = m.at("smoothing");
        if (s.contains("transition_time_seconds"))
            mv.upSeconds = mv.downSeconds = number(s, "transition_time_seconds", 0.01, 3600.0, w + ".smoothing");
        if (s.contains("smoothing_factor_up") || s.contains("smoothing_factor_down"))
            c.warnings.push_back("movement_bpm.smoothing.smoothing_factor_* are ignored: loopd times transitions in seconds (transition_time_seconds)");
    }
}

void readLoopd(const json& j, FileConfig& c) {
    if (j.contains("bpm")) c.bpm = number(j, "bpm", 20.0, 400.0, "config");
    if (j.contains("meter")) c.meter = static_cast<int>(number(j, "meter", 1.0, 32.0, "config"));
    if (j.contains("analysis")) {
        const json& a = j.at("analysis");
        AnalysisConfig& an = c.analysis;
        const std::string w = "analysis";
        if (a.contains("bpm_range")) {
            const json& r = a.at("bpm_range");
            if (!r.is_array() || r.size() != 2 || !r[0].is_number() || !r[1].is_number())
                throw std::runtime_error("analysis.bpm_range must be [low, high]");
            an.bpmLow = r[0].get<double>();
            an.bpmHigh = r[1].get<double>();
            if (!(an.bpmLow >= 20.0 && an.bpmHigh <= 400.0 && an.bpmHigh >= 2.0 * an.bpmLow))
                throw std::runtime_error("analysis.bpm_range must lie in 20..400 and span an octave (high >= 2 x low)");
            c.analysisRangeGiven = true;
        }
        if (a.contains("min_confidence")) an.minConfidence = number(a, "min_confidence", 0.0, 1.0, w);
        if (a.contains("transition_seconds")) an.upSeconds = an.downSeconds = number(a, "transition_seconds", 0.01, 3600.0, w);
        if (a.contains("up_seconds")) an.upSeconds = number(a, "up_seconds", 0.01, 3600.0, w);
        if (a.contains("down_seconds")) an.downSeconds = number(a, "down_seconds", 0.01, 3600.0, w);
    }
    if (!j.contains("movement")) return;
    const json& m = j.at("movement");
    MovementConfig& mv = c.movement;
    const std::string w = "movement";
    if (m.contains("steps")) {
        std::vector<std::pair<double, double>> steps;
        for (const json& s : m.at("steps")) {
            if (!s.is_array() || s.size() != 2 || !s[0].is_number() || !s[1].is_number())
                throw std::runtime_error("movement.steps must be a list of [threshold, bpm] pairs");
            steps.emplace_back(s[0].get<double>(), s[1].get<double>());
        }
        if (!std::is_sorted(steps.begin(), steps.end()))
            throw std::runtime_error("movement.steps thresholds must increase");
        mv.steps = steps;
    }
    if (m.contains("high_max_bpm")) mv.highMaxBpm = number(m, "high_max_bpm", 20.0, 400.0, w);
    if (m.contains("max_value")) mv.maxValue = number(m, "max_value", 0.0, 1.0, w);
    if (m.contains("input_max")) mv.inputMax = number(m, "input_max", 1.0, 1e6, w);
    if (m.contains("transition_seconds")) mv.upSeconds = mv.downSeconds = number(m, "transition_seconds", 0.01, 3600.0, w);
    if (m.contains("up_seconds")) mv.upSeconds = number(m, "up_seconds", 0.01, 3600.0, w);
    if (m.contains("down_seconds")) mv.downSeconds = number(m, "down_seconds", 0.01, 3600.0, w);
}

} // namespace

void loadConfigFile(const std::string& path, FileConfig& c) {
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open config file " + path);
    json j;
    try {
        j = json::parse(f);
    } catch (const json::exception& e) {
        throw std::runtime_error("config file " + path + " is not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw std::runtime_error("config file " + path + " must hold a JSON object");
    try {
        if (j.contains("movement_bpm")) readCrowdstream(j.at("movement_bpm"), c);
        readLoopd(j, c);
    } catch (const json::exception& e) {
        throw std::runtime_error("config file " + path + ": " + e.what());
    }
}

} // namespace loopd
