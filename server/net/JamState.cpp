// The jam's state as JSON (JamState.h).
#include "server/net/JamState.h"

#include <cctype>
#include <cmath>

#include <nlohmann/json.hpp>

namespace loopd::net {

std::string toJson(const JamState& s) {
    nlohmann::json j = {{"bpm", s.bpm}, {"beatsPerBar", s.beatsPerBar}, {"bars", s.bars},
                        {"loopFrames", s.loopFrames}, {"sampleRate", s.sampleRate}, {"cycle", s.cycle},
                        {"turn", s.turn}, {"musicians", s.musicians}};
    return j.dump();
}

bool parseJamState(const std::string& text, JamState& out, std::string& error) {
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        error = "the state is not a JSON object";
        return false;
    }
    auto number = [&](const char* key, double lo, double hi, double& v) {
        if (!j.contains(key) || !j[key].is_number()) { error = std::string("the state has no number '") + key + "'"; return false; }
        v = j[key].get<double>();
        if (!(v >= lo && v <= hi)) { error = std::string("the state's ") + key + " is out of range"; return false; }
        return true;
    };
    double bpm = 0, bpb = 0, bars = 0, frames = 0, rate = 0, cycle = 0;
    if (!number("bpm", 20, 400, bpm) || !number("beatsPerBar", 1, 32, bpb) || !number("bars", 1, 64, bars) ||
        !number("loopFrames", 1, 1e9, frames) || !number("sampleRate", 8000, 384000, rate) || !number("cycle", -1, 1e12, cycle))
        return false;
    if (!j.contains("turn") || !j["turn"].is_string()) { error = "the state has no string 'turn'"; return false; }
    if (!j.contains("musicians") || !j["musicians"].is_array()) { error = "the state has no array 'musicians'"; return false; }
    JamState s;
    s.bpm = bpm;
    s.beatsPerBar = static_cast<int>(bpb);
    s.bars = static_cast<int>(bars);
    s.loopFrames = static_cast<int64_t>(frames);
    s.sampleRate = rate;
    s.cycle = static_cast<int64_t>(cycle);
    s.turn = j["turn"].get<std::string>();
    for (const auto& m : j["musicians"]) {
        if (!m.is_string()) { error = "the state's musicians are not all names"; return false; }
        s.musicians.push_back(m.get<std::string>());
    }
    out = std::move(s);
    return true;
}

int64_t jamLoopFrames(double bpm, int beatsPerBar, int bars, double sampleRate) {
    return std::llround(static_cast<double>(bars) * beatsPerBar * 60.0 / bpm * sampleRate);
}

bool validJamName(const std::string& name) {
    if (name.empty() || name.size() > 32) return false;
    for (char c : name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
    return true;
}

} // namespace loopd::net
