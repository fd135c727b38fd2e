#include "server/nodes/effects/EffectNode.h"

#include <algorithm>

namespace loopd {

EffectNode::EffectNode(int32_t id, int blockSize)
    : Node(id, Kind::Effect), wet_(std::make_unique<float[]>(static_cast<size_t>(blockSize))), blockSize_(blockSize) {
    bypass_.reset(1.0f);
}

SetResult EffectNode::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                               const ProcessContext& ctx) noexcept {
    if (id != ParamId::Bypass) return Node::setParam(id, value, rampSamples, explicitRamp, ctx);
    if (explicitRamp) return SetResult::NotRampable;
    bypassed_ = value >= 0.5f;
    if (!inserted_) bypass_.reset(bypassed_ ? 0.0f : 1.0f);
    return SetResult::Ok;
}

bool EffectNode::getParam(ParamId id, float& value) const noexcept {
    if (id != ParamId::Bypass) return Node::getParam(id, value);
    value = bypassed_ ? 1.0f : 0.0f;
    return true;
}

void EffectNode::render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept {
    const float want = bypassed_ || forcedBypass(ctx) ? 0.0f : 1.0f;
    if (bypass_.target() != want) bypass_.setTarget(want, ctx.smoothSamples);
    const int n = std::min(numFrames, blockSize_);
    for (int k = 0; k < n; ++k) wet_[static_cast<size_t>(k)] = env_.next() * bypass_.next();
    process(ctx, bus, offset, n, wet_.get());
    finishSegment(ctx);
}

} // namespace loopd
