#pragma once
// Parameter names of every node type. The control thread maps an OSC name to a ParamId (an
// unknown name fails there); the node itself says whether it has that parameter (it fails on the
// audio thread with a reason naming the node type).
#include <cstdint>
#include <optional>
#include <string_view>

namespace loopd {

enum class ParamId : uint8_t {
    Gain, Pan, Mute, Solo,                 // faders (groups and sources)
    Buf, Loop, Rate, Start, Out, Fade,     // player
    StartWith, StopWith, Offset,           // player: dipstream-style links
    In, Chans,                             // input
    Follow, Bpm, StartFrac, Hold,          // player: tempo following, start fraction, held start
    Low, Mid, High, Bypass,                // eq3 (bypass: any effect)
    Mode, CutoffHz, Q, LfoRateHz, LfoBeats, LfoDepthOctaves, LfoShape,   // filter
    DelaySeconds, DelayBeats, Feedback, Mix, PingPong,                   // delay
    Room, Damping,                                                       // reverb (+ mix)
    Engage, Division,                                                    // stutter
    GainDb, CeilingDb,                                                   // gain, limiter
    OutMask, Cue, CueGain,                                               // routing
    Stretch, Pitch,                                                      // player: time-stretch
    Align, Downbeat,                                                     // player: downbeat on the bar
    Count
};

// [any]
std::optional<ParamId> paramFromName(std::string_view name) noexcept;
const char* paramName(ParamId id) noexcept;

// [any] Whether a parameter may be the target of /n_ramp (continuous values only).
bool paramRampable(ParamId id) noexcept;

// [any] The numeric value of a named setting (`mode` lp/hp/bp, `lfoShape` sine/triangle/square/saw).
std::optional<float> paramEnumValue(ParamId id, std::string_view name) noexcept;

} // namespace loopd
