#include "server/rt/RtCheck.h"

namespace loopd::rt {
namespace {
thread_local bool t_inAudio = false;
}
bool inAudioCallback() noexcept { return t_inAudio; }
AudioCallbackScope::AudioCallbackScope() noexcept { t_inAudio = true; }
AudioCallbackScope::~AudioCallbackScope() { t_inAudio = false; }
} // namespace loopd::rt
