#include "server/engine/Node.h"

#include <cmath>

namespace loopd {

const char* Node::kindName(Kind kind) noexcept {
    switch (kind) {
    case Kind::Group: return "group";
    case Kind::Player: return "player";
    case Kind::Input: return "input";
    case Kind::Effect: return "effect";
    case Kind::Looper: return "looper";
    }
    return "node";
}

SetResult Node::setParam(ParamId id, float value, int64_t, bool explicitRamp,
                         const ProcessContext& ctx) noexcept {
    if (explicitRamp) return SetResult::NotRampable;
    switch (id) {
    case ParamId::Solo: solo = value >= 0.5f; return SetResult::Ok;
    case ParamId::Hold:
        if (inserted_) return SetResult::BadValue; // only at creation
        held = value >= 0.5f;
        return SetResult::Ok;
    case ParamId::Fade:
        if (!(value >= 0.0f && value <= 60.0f)) return SetResult::BadValue;
        fadeSamples_ = std::llround(static_cast<double>(value) * ctx.sampleRate);
        return SetResult::Ok;
    case ParamId::StartWith: startWith = static_cast<int32_t>(value); return SetResult::Ok;
    case ParamId::StopWith: stopWith = static_cast<int32_t>(value); return SetResult::Ok;
    case ParamId::Offset:
        if (!(std::fabs(value) <= 86400.0f)) return SetResult::BadValue;
        linkOffsetSeconds = value;
        return SetResult::Ok;
    default: return SetResult::NoSuchParam;
    }
}

bool Node::getParam(ParamId id, float& value) const noexcept {
    switch (id) {
    case ParamId::Solo: value = solo ? 1.0f : 0.0f; return true;
    case ParamId::StartWith: value = static_cast<float>(startWith); return true;
    case ParamId::StopWith: value = static_cast<float>(stopWith); return true;
    case ParamId::Offset: value = static_cast<float>(linkOffsetSeconds); return true;
    default: return false;
    }
}

void Node::onInserted(ProcessContext& ctx, int64_t now) noexcept {
    inserted_ = true;
    soloGain_.reset(soloMuted ? 0.0f : 1.0f);
    if (startWith >= 0 || scheduledStart >= 0 || held || !readyToStart(ctx)) {
        state_ = State::Pending;
        env_.reset(0.0f);
        return;
    }
    begin(ctx, now);
}

void Node::begin(ProcessContext& ctx, int64_t at) noexcept {
    state_ = State::Running;
    startedAt = at;
    scheduledStart = -1;
    env_.reset(0.0f);
    env_.setTarget(1.0f, fade(ctx));
    onBegin(ctx);
    if (ctx.report.numStarted < ProcessContext::Report::kMaxEnded) ctx.report.started[ctx.report.numStarted++] = this;
}

void Node::release(const ProcessContext& ctx, int64_t at) noexcept {
    switch (state_) {
    case State::Ended:
    case State::Releasing: return;
    case State::Pending:
    case State::Paused:
        state_ = State::Releasing;
        env_.reset(0.0f);
        endedAt = at;
        return;
    default:
        state_ = State::Releasing;
        env_.setTarget(0.0f, fade(ctx));
        endedAt = at + env_.remaining();
    }
}

void Node::endNow(ProcessContext& ctx, int64_t at) noexcept {
    if (state_ == State::Ended) return;
    state_ = State::Ended;
    endedAt = at;
    if (ctx.report.numEnded < ProcessContext::Report::kMaxEnded) ctx.report.ended[ctx.report.numEnded++] = this;
    else ctx.report.endedOverflow = true;
}

void Node::setRunning(bool run, const ProcessContext& ctx) noexcept {
    if (run) {
        if (state_ == State::Paused && startedAt < 0) {
            state_ = State::Pending; // was paused before it ever started
        } else if (state_ == State::Paused || state_ == State::Pausing) {
            state_ = State::Running;
            env_.setTarget(1.0f, ctx.declickSamples);
        }
    } else if (state_ == State::Running && startedAt >= ctx.blockStartSample && env_.value() == 0.0f) {
        // Began in this block and not a frame rendered yet (/s_new and /n_run 0 in one bundle, as
        // a project loads a paused node): paused before it ever started, as if it had waited.
        state_ = State::Paused;
        startedAt = -1;
    } else if (state_ == State::Running) {
        state_ = State::Pausing;
        env_.setTarget(0.0f, ctx.declickSamples);
    } else if (state_ == State::Pending) {
        state_ = State::Paused;
    }
}

void Node::setSoloMuted(bool muted, const ProcessContext& ctx) noexcept {
    if (muted == soloMuted) return;
    soloMuted = muted;
    soloGain_.setTarget(muted ? 0.0f : 1.0f, inserted_ ? ctx.smoothSamples : 0);
}

bool Node::finishSegment(ProcessContext& ctx) noexcept {
    if (env_.ramping()) return false;
    if (state_ == State::Pausing) {
        state_ = State::Paused;
    } else if (state_ == State::Releasing) {
        state_ = State::Ended;
        if (ctx.report.numEnded < ProcessContext::Report::kMaxEnded) ctx.report.ended[ctx.report.numEnded++] = this;
        else ctx.report.endedOverflow = true;
        return true;
    }
    return false;
}

} // namespace loopd
