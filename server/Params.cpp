#include "server/Params.h"

#include <array>

namespace loopd {
namespace {
constexpr std::array<const char*, static_cast<size_t>(ParamId::Count)> kNames = {
    "gain", "pan", "mute", "solo", "buf", "loop", "rate", "start", "out", "fade",
    "startWith", "stopWith", "offset", "in", "chans", "follow", "bpm", "startFrac", "hold",
    "low", "mid", "high", "bypass"};
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
    return id == ParamId::Gain || id == ParamId::Pan || id == ParamId::Rate || id == ParamId::Low ||
           id == ParamId::Mid || id == ParamId::High;
}

} // namespace loopd
