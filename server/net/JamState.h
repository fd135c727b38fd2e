#pragma once
// The interval jam's state as GET /jam/state serves it (JSON), and its checked parser.
//
// Threads: any (pure functions).
#include <cstdint>
#include <string>
#include <vector>

namespace loopd::net {

struct JamState {
    double bpm = 120.0;
    int beatsPerBar = 4;
    int bars = 1;
    int64_t loopFrames = 0;   // one cycle: bars * beatsPerBar beats at bpm, in frames
    double sampleRate = 48000.0;
    int64_t cycle = -1;       // the cycle playing now (-1: the first has not started)
    std::string turn;         // whose take is recorded in this cycle ("" nobody's)
    std::vector<std::string> musicians;
};

std::string toJson(const JamState& s);
// False with `error` set when `text` is not a jam state (not JSON, a field missing or out of range).
bool parseJamState(const std::string& text, JamState& out, std::string& error);
// Frames of one cycle (rounded).
int64_t jamLoopFrames(double bpm, int beatsPerBar, int bars, double sampleRate);
// A musician's name: 1..32 of [A-Za-z0-9_.-].
bool validJamName(const std::string& name);

} // namespace loopd::net
