#include "server/nodes/effects/Eq3Node.h"

namespace loopd {

Eq3Node::Eq3Node(int32_t id, double sampleRate, int numChannels, int blockSize) : EffectNode(id, blockSize) {
    eq_.prepare(sampleRate, numChannels, {});
}

SetResult Eq3Node::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                            const ProcessContext& ctx) noexcept {
    if (id != ParamId::Low && id != ParamId::Mid && id != ParamId::High)
        return EffectNode::setParam(id, value, rampSamples, explicitRamp, ctx);
    if (!(value >= 0.0f && value <= 4.0f)) return SetResult::BadValue;
    const auto band = id == ParamId::Low ? dsp::Eq3Isolator::Low : id == ParamId::Mid ? dsp::Eq3Isolator::Mid : dsp::Eq3Isolator::High;
    if (!inserted_) eq_.setGainNow(band, value);
    else eq_.setGain(band, value, explicitRamp ? rampSamples : -1);
    return SetResult::Ok;
}

bool Eq3Node::getParam(ParamId id, float& value) const noexcept {
    switch (id) {
    case ParamId::Low: value = eq_.gain(dsp::Eq3Isolator::Low); return true;
    case ParamId::Mid: value = eq_.gain(dsp::Eq3Isolator::Mid); return true;
    case ParamId::High: value = eq_.gain(dsp::Eq3Isolator::High); return true;
    default: return EffectNode::getParam(id, value);
    }
}

void Eq3Node::process(ProcessContext&, Bus& bus, int offset, int numFrames, const float* wet) noexcept {
    eq_.process(bus.ch, bus.numChannels, offset, numFrames, wet);
}

} // namespace loopd
