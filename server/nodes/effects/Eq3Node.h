#pragma once
// `eq3`: the DJ three-band isolator (dsp/Eq3Isolator) on its group's bus, in place. Parameters
// `low`, `mid`, `high` (linear gains 0..4, smoothed per sample, rampable) and `bypass` (0/1,
// click-free). With --disable-filters it passes audio through unchanged.
#include "dsp/Eq3Isolator.h"
#include "server/nodes/effects/EffectNode.h"

namespace loopd {

class Eq3Node final : public EffectNode {
public:
    const char* typeName() const noexcept override { return "eq3"; }
    // [control] Allocates the filter state.
    Eq3Node(int32_t id, double sampleRate, int numChannels, int blockSize);
    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                       const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;

protected:
    void process(ProcessContext& ctx, Bus& bus, int offset, int numFrames, const float* wet) noexcept override;
    bool forcedBypass(const ProcessContext& ctx) const noexcept override { return !ctx.filtersEnabled; }

private:
    dsp::Eq3Isolator eq_;
};

} // namespace loopd
