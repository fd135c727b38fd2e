#include "server/engine/Params.h"

#include <array>

namespace loopd {
namespace {
constexpr std::array<const char*, static_cast<size_t>(ParamId::Count)> kNames = {
    "gain", "pan", "mute", "solo", "buf", "loop", "rate", "start", "out", "fade",
    "startWith", "stopWith", "offset", "in", "chans", "follow", "bpm", "startFrac", "hold",
    "low", "mid", "high", "bypass",
    "mode", "cutoffHz", "q", "lfoRateHz", "lfoBeats", "lfoDepthOctaves", "lfoShape",
    "delaySeconds", "delayBeats", "feedback", "mix", "pingpong",
    "room", "damping", "engage", "division", "gainDb", "ceilingDb", "outMask", "cue", "cueGain", "stretch", "pitch", "align", "downbeat"};
}

std::optional<ParamId> paramFromName(std::string_view name) noexcept {
    for (size_t i = 0; i < kNames.size(); ++i)
        if (name == kNames[i]) return static_cast<ParamId>(i);
    if (name == "bufnum") return ParamId::Buf; // scsynth's spelling
    return std::nullopt;
}

const char* paramName(ParamId id) noexcept {
    const auto i = static_cast<size_t>(id);
    return i < kNames.size() ? kNames[i] : "?";
}

bool paramRampable(ParamId id) noexcept {
    switch (id) {
    case ParamId::Gain: case ParamId::Pan: case ParamId::Rate: case ParamId::Low: case ParamId::Mid:
    case ParamId::High: case ParamId::CutoffHz: case ParamId::Q: case ParamId::LfoDepthOctaves:
    case ParamId::Feedback: case ParamId::Mix: case ParamId::GainDb: case ParamId::CueGain:
        return true;
    default: return false;
    }
}

std::optional<float> paramEnumValue(ParamId id, std::string_view name) noexcept {
    if (id == ParamId::Mode) {
        if (name == "lp" || name == "lowpass") return 0.0f;
        if (name == "hp" || name == "highpass") return 1.0f;
        if (name == "bp" || name == "bandpass") return 2.0f;
    } else if (id == ParamId::Stretch) {
        if (name == "rate" || name == "playback_rate") return 0.0f;
        if (name == "rb2" || name == "pyrubberband") return 1.0f;
        if (name == "rb3") return 2.0f;
        if (name == "wsola" || name == "audiotsm") return 3.0f;
    } else if (id == ParamId::LfoShape) {
        if (name == "sine") return 0.0f;
        if (name == "triangle" || name == "tri") return 1.0f;
        if (name == "square") return 2.0f;
        if (name == "saw") return 3.0f;
    }
    return std::nullopt;
}

} // namespace loopd
