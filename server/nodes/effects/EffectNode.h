#pragma once
// Base of the effect nodes: they process their group's bus in place at their position in the
// chain. The wet amount per sample is the start/stop envelope times the `bypass` crossfade, so
// inserting, freeing and bypassing an effect never clicks: output = dry + wet * (effect - dry).
#include <memory>

#include "server/engine/Node.h"

namespace loopd {

class EffectNode : public Node {
public:
    // [control] Allocates the per-block wet buffer.
    EffectNode(int32_t id, int blockSize);

    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                       const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;
    void render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept final;

protected:
    // [audio] Process bus frames [offset, offset+numFrames) in place; wet[k] is the amount for
    // frame offset+k (0 = leave the dry signal).
    virtual void process(ProcessContext& ctx, Bus& bus, int offset, int numFrames, const float* wet) noexcept = 0;
    // [audio] Whether the node must pass audio through whatever `bypass` says.
    virtual bool forcedBypass(const ProcessContext&) const noexcept { return false; }
    // Exact at both ends: wet 1 gives the effect's samples, wet 0 the dry ones, bit for bit.
    static float mixWet(float dry, float effect, float wet) noexcept {
        return wet >= 1.0f ? effect : wet <= 0.0f ? dry : dry + wet * (effect - dry);
    }

private:
    dsp::LinearRamp bypass_; // 1 = effect, 0 = dry
    bool bypassed_ = false;
    std::unique_ptr<float[]> wet_;
    int blockSize_;
};

} // namespace loopd
