#pragma once
// Marks the audio thread while it is inside the engine, so that tests can prove that nothing on
// it allocates or locks (a malloc / pthread_mutex_lock hook asks inAudioCallback()).
namespace loopd::rt {

bool inAudioCallback() noexcept;

class AudioCallbackScope {
public:
    AudioCallbackScope() noexcept;
    ~AudioCallbackScope();
    AudioCallbackScope(const AudioCallbackScope&) = delete;
    AudioCallbackScope& operator=(const AudioCallbackScope&) = delete;
};

} // namespace loopd::rt
