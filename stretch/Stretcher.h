#pragma once
// Time-stretch engines behind one interface, the way Rubber Band fronts its R2 and R3 engines.
// A stretcher consumes input frames and produces output frames; timeRatio = output duration /
// input duration (2 = twice as long, half as fast), pitchScale = frequency factor.
//
//   rb2   — Rubber Band R2 ("faster"), real-time mode
//   rb3   — Rubber Band R3 ("finer"), real-time mode
//   wsola — SoundTouch (WSOLA time-stretch)
// (`rate`, plain varispeed, needs no stretcher: the player reads faster or slower.)
//
// Threads: create() on the control thread (allocates). The rest runs on one thread at a time —
// in real time a stretch thread, never the audio thread (server/engine/StretchWorker.h); offline
// (nrt, tests) the rendering thread itself. Below, [stepping] means that one thread. Rubber Band
// may still grow buffers when a ratio or pitch needs more room than it had (its header's
// "extreme ratio changes" exception), SoundTouch on every pitch change: harmless on the worker
// and offline, which is why no audio thread runs them.
#include <memory>
#include <optional>
#include <string_view>

namespace loopd::stretch {

enum class Method { Rate, Rb2, Rb3, Wsola };

// [any] "rate"/"playback_rate" → Rate, "rb2"/"pyrubberband" → Rb2, "rb3" → Rb3, "wsola"/"audiotsm" → Wsola.
std::optional<Method> methodFromName(std::string_view name) noexcept;
const char* methodName(Method m) noexcept;

class Stretcher {
public:
    virtual ~Stretcher() = default;

    // [control] A stretcher for `channels` at `sampleRate`, for ratios in [0.25, 4], with all
    // its memory allocated (and, for SoundTouch, its FIFOs grown to their working size).
    // Null for Method::Rate.
    static std::unique_ptr<Stretcher> create(Method method, int channels, double sampleRate, int maxFeed,
                                             double initialTimeRatio, double pitchScale);

    // [stepping] When playback starts (and again when a player comes back from being shed):
    // reset, set the starting ratios, then feed the engine's preferred start pad of silence, so
    // that output frame 0 after dropping startDelay() frames lines up with the first real input
    // frame (the order Rubber Band's header prescribes).
    virtual void prime(double timeRatio, double pitchScale) noexcept = 0;

    // [stepping] Ratio changes happen between feed/retrieve calls.
    virtual void setTimeRatio(double ratio) noexcept = 0;
    virtual void setPitchScale(double scale) noexcept = 0;
    // [stepping] Frames to feed before more output can come (at most maxFeed).
    virtual int inputWanted() const noexcept = 0;
    virtual void feed(const float* const* in, int numFrames) noexcept = 0;
    virtual int available() const noexcept = 0;
    virtual int retrieve(float* const* out, int numFrames) noexcept = 0;
    // [stepping] The same with interleaved frames (channels() floats a frame), the layout of the
    // rings between the audio thread and the stretch threads: SoundTouch works interleaved and
    // takes and gives them as they are (no copy on loopd's side); Rubber Band (planar) converts.
    virtual void feedInterleaved(const float* in, int numFrames) noexcept = 0;
    virtual int retrieveInterleaved(float* out, int numFrames) noexcept = 0;
    // [any] Output frames to drop after prime() so that output lines up with input (latency).
    virtual int startDelay() const noexcept = 0;
    virtual Method method() const noexcept = 0;
    int channels() const noexcept { return channels_; }
    int maxFeed() const noexcept { return maxFeed_; }

protected:
    int channels_ = 0;
    int maxFeed_ = 0;
};

} // namespace loopd::stretch
