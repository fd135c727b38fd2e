#pragma once
// `input`: brings live input channels into a group's bus. `in` is the first input channel,
// `chans` how many (1 = mono, panned with constant power onto out/out+1), `out` the first bus
// channel, with gain, pan, mute and de-clicked start/stop like a player.
#include "dsp/Ramp.h"
#include "server/engine/Node.h"

namespace loopd {

class InputNode final : public Node {
public:
    explicit InputNode(int32_t id) noexcept;
    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                       const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;
    void render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept override;

private:
    int in_ = 0;
    int chans_ = 2;
    int out_ = 0;
    dsp::LinearRamp gain_;
    dsp::LinearRamp pan_;
    dsp::LinearRamp mute_;
    bool muted_ = false;
};

} // namespace loopd
