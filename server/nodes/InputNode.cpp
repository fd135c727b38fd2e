#include "server/nodes/InputNode.h"

#include <algorithm>

#include "dsp/Pan.h"

namespace loopd {

InputNode::InputNode(int32_t id) noexcept : Node(id, Kind::Input) {
    gain_.reset(1.0f);
    pan_.reset(0.0f);
    mute_.reset(1.0f);
}

SetResult InputNode::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                              const ProcessContext& ctx) noexcept {
    const int64_t ramp = rampFor(explicitRamp, rampSamples, ctx);
    switch (id) {
    case ParamId::Gain:
        return rampWithin(gain_, value, 0.0f, 64.0f, ramp, explicitRamp);
    case ParamId::Pan:
        return rampWithin(pan_, value, -1.0f, 1.0f, ramp, explicitRamp);
    default: break;
    }
    if (explicitRamp) return SetResult::NotRampable;
    switch (id) {
    case ParamId::In:
        if (!(value >= 0.0f && value < static_cast<float>(std::max(ctx.numInputs, 1)))) return SetResult::BadValue;
        in_ = static_cast<int>(value);
        return SetResult::Ok;
    case ParamId::Chans:
        if (!(value >= 1.0f && value <= static_cast<float>(kMaxChannels))) return SetResult::BadValue;
        chans_ = static_cast<int>(value);
        return SetResult::Ok;
    case ParamId::Out:
        if (!(value >= 0.0f && value < static_cast<float>(ctx.numOutputs))) return SetResult::BadValue;
        out_ = static_cast<int>(value);
        return SetResult::Ok;
    case ParamId::Mute:
        muted_ = value >= 0.5f;
        mute_.setTarget(muted_ ? 0.0f : 1.0f, rampFor(false, 0, ctx));
        return SetResult::Ok;
    default: return Node::setParam(id, value, rampSamples, explicitRamp, ctx);
    }
}

bool InputNode::getParam(ParamId id, float& value) const noexcept {
    switch (id) {
    case ParamId::Gain: value = gain_.target(); return true;
    case ParamId::Pan: value = pan_.target(); return true;
    case ParamId::In: value = static_cast<float>(in_); return true;
    case ParamId::Chans: value = static_cast<float>(chans_); return true;
    case ParamId::Out: value = static_cast<float>(out_); return true;
    case ParamId::Mute: value = muted_ ? 1.0f : 0.0f; return true;
    default: return Node::getParam(id, value);
    }
}

void InputNode::render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept {
    if (state_ == State::Pending) {
        if (!beginWithin(ctx, offset, numFrames)) return;
    }
    const int chans = std::min(chans_, ctx.numInputs - in_);
    const bool mono = chans == 1;
    const bool toPair = out_ + 1 < bus.numChannels;
    for (int i = offset; i < offset + numFrames; ++i) {
        const float g = gain_.next() * mute_.next() * nextEnvelope();
        const float p = pan_.next();
        if (chans <= 0) continue;
        if (mono) {
            const float s = ctx.inputs[in_][i] * g;
            if (toPair) {
                const dsp::StereoGains pg = dsp::constantPowerPan(p);
                bus.ch[out_][i] += pg.left * s;
                bus.ch[out_ + 1][i] += pg.right * s;
            } else {
                bus.ch[out_][i] += s;
            }
        } else {
            const dsp::StereoGains pg = dsp::balance(p);
            for (int c = 0; c < chans && out_ + c < bus.numChannels; ++c)
                bus.ch[out_ + c][i] += ctx.inputs[in_ + c][i] * g * (c == 0 ? pg.left : c == 1 ? pg.right : 1.0f);
        }
    }
    finishSegment(ctx);
}

} // namespace loopd
