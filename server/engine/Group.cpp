#include "server/engine/Group.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dsp/Pan.h"

namespace loopd {

Group::Group(int32_t id, int numChannels, int blockSize) : Node(id, Kind::Group) {
    const int ch = std::clamp(numChannels, 1, kMaxChannels);
    storage_ = std::make_unique<float[]>(static_cast<size_t>(ch * blockSize));
    bus_.numChannels = ch;
    for (int c = 0; c < ch; ++c) bus_.ch[c] = storage_.get() + c * blockSize;
    gain_.reset(1.0f);
    pan_.reset(0.0f);
    mute_.reset(1.0f);
    cueGain_.reset(1.0f);
}

void Group::onInserted(ProcessContext& ctx, int64_t now) noexcept {
    // A new group is silent, so it needs no fade-in; it is running at once.
    inserted_ = true;
    soloGain_.reset(soloMuted ? 0.0f : 1.0f);
    state_ = State::Running;
    startedAt = now;
    env_.reset(1.0f);
    (void)ctx;
}

SetResult Group::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                          const ProcessContext& ctx) noexcept {
    const int64_t ramp = rampFor(explicitRamp, rampSamples, ctx);
    switch (id) {
    case ParamId::Gain:
        return rampWithin(gain_, value, 0.0f, 64.0f, ramp, explicitRamp);
    case ParamId::Pan:
        return rampWithin(pan_, value, -1.0f, 1.0f, ramp, explicitRamp);
    case ParamId::CueGain:
        return rampWithin(cueGain_, value, 0.0f, 4.0f, ramp, explicitRamp);
    case ParamId::Cue:
        if (explicitRamp) return SetResult::NotRampable;
        cue_ = value >= 0.5f;
        return SetResult::Ok;
    case ParamId::Out:
        if (explicitRamp) return SetResult::NotRampable;
        if (!(value >= 0.0f && value < static_cast<float>(ctx.numOutputs) && value == std::floor(value))) return SetResult::BadValue;
        out_ = static_cast<int>(value);
        return SetResult::Ok;
    case ParamId::Mute:
        if (explicitRamp) return SetResult::NotRampable;
        muted_ = value >= 0.5f;
        mute_.setTarget(muted_ ? 0.0f : 1.0f, rampFor(false, 0, ctx));
        return SetResult::Ok;
    default: return Node::setParam(id, value, rampSamples, explicitRamp, ctx);
    }
}

bool Group::getParam(ParamId id, float& value) const noexcept {
    switch (id) {
    case ParamId::Gain: value = gain_.target(); return true;
    case ParamId::Pan: value = pan_.target(); return true;
    case ParamId::Mute: value = muted_ ? 1.0f : 0.0f; return true;
    case ParamId::Out: value = static_cast<float>(out_); return true;
    case ParamId::Cue: value = cue_ ? 1.0f : 0.0f; return true;
    case ParamId::CueGain: value = cueGain_.target(); return true;
    default: return Node::getParam(id, value);
    }
}

void Group::renderOwnBus(ProcessContext& ctx, int offset, int numFrames) noexcept {
    for (int c = 0; c < bus_.numChannels; ++c)
        std::memset(bus_.ch[c] + offset, 0, sizeof(float) * static_cast<size_t>(numFrames));
    for (Node* n = head; n; n = n->next)
        if (n->audible()) n->render(ctx, bus_, offset, numFrames);

    // Cue (headphone) send, pre-fader: what this group plays, whatever its fader says.
    if (cue_ && ctx.cueBus) {
        for (int i = offset; i < offset + numFrames; ++i) {
            const float g = cueGain_.next();
            for (int c = 0; c < ctx.cueBus->numChannels; ++c)
                ctx.cueBus->ch[c][i] += g * bus_.ch[std::min(c, bus_.numChannels - 1)][i];
        }
    }

    // Fader. Balance for the first pair; other channels take gain only.
    const bool stereo = bus_.numChannels >= 2;
    const bool fast = !gain_.ramping() && !pan_.ramping() && !mute_.ramping() && envelopeStatic();
    if (fast) {
        const float g = gain_.value() * mute_.value() * envelopeValue();
        const dsp::StereoGains b = stereo ? dsp::balance(pan_.value()) : dsp::StereoGains{1.0f, 1.0f};
        for (int c = 0; c < bus_.numChannels; ++c) {
            const float gc = g * (c == 0 ? b.left : c == 1 ? b.right : 1.0f);
            if (gc == 1.0f) continue;
            float* x = bus_.ch[c] + offset;
            for (int i = 0; i < numFrames; ++i) x[i] *= gc;
        }
    } else {
        for (int i = offset; i < offset + numFrames; ++i) {
            const float g = gain_.next() * mute_.next() * nextEnvelope();
            const dsp::StereoGains b = stereo ? dsp::balance(pan_.next()) : dsp::StereoGains{1.0f, 1.0f};
            if (!stereo) pan_.next();
            for (int c = 0; c < bus_.numChannels; ++c)
                bus_.ch[c][i] *= g * (c == 0 ? b.left : c == 1 ? b.right : 1.0f);
        }
    }
    finishSegment(ctx);
}

void Group::render(ProcessContext& ctx, Bus& parentBus, int offset, int numFrames) noexcept {
    renderOwnBus(ctx, offset, numFrames);
    const int ch = std::min(bus_.numChannels, parentBus.numChannels - out_);
    for (int c = 0; c < ch; ++c) {
        const float* src = bus_.ch[c] + offset;
        float* dst = parentBus.ch[c + out_] + offset;
        for (int i = 0; i < numFrames; ++i) dst[i] += src[i];
    }
}

void Group::addToHead(Node* n) noexcept {
    n->parent = this;
    n->prev = nullptr;
    n->next = head;
    if (head) head->prev = n; else tail = n;
    head = n;
}

void Group::addToTail(Node* n) noexcept {
    n->parent = this;
    n->next = nullptr;
    n->prev = tail;
    if (tail) tail->next = n; else head = n;
    tail = n;
}

void Group::insertBefore(Node* n, Node* before) noexcept {
    Group* g = before->parent;
    n->parent = g;
    n->next = before;
    n->prev = before->prev;
    if (before->prev) before->prev->next = n; else g->head = n;
    before->prev = n;
}

void Group::insertAfter(Node* n, Node* after) noexcept {
    Group* g = after->parent;
    n->parent = g;
    n->prev = after;
    n->next = after->next;
    if (after->next) after->next->prev = n; else g->tail = n;
    after->next = n;
}

void Group::unlink(Node* n) noexcept {
    Group* g = n->parent;
    if (!g) return;
    if (n->prev) n->prev->next = n->next; else g->head = n->next;
    if (n->next) n->next->prev = n->prev; else g->tail = n->prev;
    n->parent = nullptr;
    n->prev = n->next = nullptr;
}

int Group::numChildren() const noexcept {
    int k = 0;
    for (const Node* n = head; n; n = n->next) ++k;
    return k;
}

} // namespace loopd
