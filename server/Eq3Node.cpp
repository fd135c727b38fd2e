#include "server/Eq3Node.h"

#include <algorithm>

namespace loopd {

Eq3Node::Eq3Node(int32_t id, double sampleRate, int numChannels, int blockSize)
    : Node(id, Kind::Effect), wet_(std::make_unique<float[]>(static_cast<size_t>(blockSize))), blockSize_(blockSize) {
    eq_.prepare(sampleRate, numChannels, {});
    bypass_.reset(1.0f);
}

SetResult Eq3Node::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                            const ProcessContext& ctx) noexcept {
    switch (id) {
    case ParamId::Low:
    case ParamId::Mid:
    case ParamId::High: {
        if (!(value >= 0.0f && value <= 4.0f)) return SetResult::BadValue;
        const auto band = id == ParamId::Low ? dsp::Eq3Isolator::Low : id == ParamId::Mid ? dsp::Eq3Isolator::Mid : dsp::Eq3Isolator::High;
        if (!inserted_) eq_.setGainNow(band, value);
        else eq_.setGain(band, value, explicitRamp ? rampSamples : -1);
        return SetResult::Ok;
    }
    case ParamId::Bypass:
        if (explicitRamp) return SetResult::NotRampable;
        bypassed_ = value >= 0.5f;
        return SetResult::Ok;
    default: return Node::setParam(id, value, rampSamples, explicitRamp, ctx);
    }
}

bool Eq3Node::getParam(ParamId id, float& value) const noexcept {
    switch (id) {
    case ParamId::Low: value = eq_.gain(dsp::Eq3Isolator::Low); return true;
    case ParamId::Mid: value = eq_.gain(dsp::Eq3Isolator::Mid); return true;
    case ParamId::High: value = eq_.gain(dsp::Eq3Isolator::High); return true;
    case ParamId::Bypass: value = bypassed_ ? 1.0f : 0.0f; return true;
    default: return Node::getParam(id, value);
    }
}

void Eq3Node::render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept {
    const float want = bypassed_ || !ctx.filtersEnabled ? 0.0f : 1.0f;
    if (bypass_.target() != want) bypass_.setTarget(want, ctx.smoothSamples);
    for (int k = 0; k < numFrames && k < blockSize_; ++k) wet_[static_cast<size_t>(k)] = env_.next() * bypass_.next();
    eq_.process(bus.ch, bus.numChannels, offset, numFrames, wet_.get());
    finishSegment(ctx);
}

} // namespace loopd
