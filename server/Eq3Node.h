#pragma once
// `eq3`: the DJ three-band isolator (dsp/Eq3Isolator) on its group's bus, in place. Parameters
// `low`, `mid`, `high` (linear gains 0..4, smoothed per sample, rampable) and `bypass` (0/1,
// click-free). With --disable-filters it passes audio through unchanged.
#include <memory>

#include "dsp/Eq3Isolator.h"
#include "server/Node.h"

namespace loopd {

class Eq3Node final : public Node {
public:
    // [control] Allocates the filter state.
    Eq3Node(int32_t id, double sampleRate, int numChannels, int blockSize);
    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                       const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;
    void render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept override;

private:
    dsp::Eq3Isolator eq_;
    dsp::LinearRamp bypass_; // 1 = processed, 0 = dry
    bool bypassed_ = false;
    std::unique_ptr<float[]> wet_;
    int blockSize_;
};

} // namespace loopd
