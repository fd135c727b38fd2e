#pragma once
// `player`: plays a buffer, once or looped, at a varispeed rate (4-point Hermite interpolation;
// rate 1 at an integer position is an exact copy), with gain, pan, mute, output channel, start
// offset and de-clicked start/stop (`fade` seconds, default the engine's de-click time). A
// one-shot player ends by itself: its fade-out is timed to finish on the buffer's last frame.
#include "dsp/Ramp.h"
#include "server/Node.h"

namespace loopd {

class Player final : public Node {
public:
    explicit Player(int32_t id) noexcept;

    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                       const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;
    void render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept override;
    void onInserted(ProcessContext& ctx, int64_t now) noexcept override;

    // [audio] Advance the read position by `frames` output frames (joining a running node in sync).
    void skipFrames(double frames, const ProcessContext& ctx) noexcept;
    double position() const noexcept { return pos_; }

private:
    void renderRange(ProcessContext& ctx, Bus& bus, int from, int to) noexcept;
    int64_t fadeLength(const ProcessContext& ctx) const noexcept;

    int32_t buf_ = -1;
    bool loop_ = false;
    int out_ = 0;
    double pos_ = 0.0;
    dsp::LinearRamp gain_;
    dsp::LinearRamp pan_;
    dsp::LinearRamp rate_;
    dsp::LinearRamp mute_;
    bool muted_ = false;
};

} // namespace loopd
