// The player node (Player.h): parameters, preparation, start and lifecycle; the block render
// dispatches to the varispeed reader (PlayerVarispeed.cpp) or the stretched playback
// (PlayerStretched.cpp).
#include "server/nodes/player/Player.h"

#include "server/engine/Engine.h"
#include "server/nodes/Registry.h"

#include <algorithm>
#include <cmath>

#include "dsp/Interpolate.h"
#include "dsp/Pan.h"
#include "server/engine/BufferData.h"

namespace loopd {

Player::Player(int32_t id) noexcept : Node(id, Kind::Player) {
    gain_.reset(1.0f);
    pan_.reset(0.0f);
    rate_.reset(1.0f);
    mute_.reset(1.0f);
}

SetResult Player::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                           const ProcessContext& ctx) noexcept {
    const int64_t ramp = rampFor(explicitRamp, rampSamples, ctx);
    // A change to what a pre-roll read or how: prime again at the start.
    if (id == ParamId::Buf || id == ParamId::Start || id == ParamId::StartFrac || id == ParamId::Rate || id == ParamId::Loop ||
        id == ParamId::Pitch || id == ParamId::Follow || id == ParamId::Bpm || id == ParamId::Align || id == ParamId::Downbeat)
        preRolled_ = false;
    switch (id) {
    case ParamId::Gain:
        return rampWithin(gain_, value, 0.0f, 64.0f, ramp, explicitRamp);
    case ParamId::Pan:
        return rampWithin(pan_, value, -1.0f, 1.0f, ramp, explicitRamp);
    case ParamId::Rate:
        if (!(value >= -64.0f && value <= 64.0f)) return SetResult::BadValue;
        // A rate set before the player sounds is exact from its first sample.
        if (state_ == State::Pending || startedAt < 0) rate_.reset(value);
        else rate_.setTarget(value, explicitRamp ? rampSamples : 0, explicitRamp);
        relock_ = true;
        return SetResult::Ok;
    default: break;
    }
    if (explicitRamp) return SetResult::NotRampable;
    switch (id) {
    case ParamId::Buf:
        if (!(value >= 0.0f && value < static_cast<float>(ctx.numBuffers))) return SetResult::BadValue;
        buf_ = static_cast<int32_t>(value);
        return SetResult::Ok;
    case ParamId::Loop: loop_ = value >= 0.5f; return SetResult::Ok;
    case ParamId::Start:
        if (!(value >= 0.0f && value < 1e12f)) return SetResult::BadValue;
        setPosition(std::floor(static_cast<double>(value)));
        relock_ = true; // a seek moves the material; the grid is taken from here (no chase)
        return SetResult::Ok;
    case ParamId::Out:
        if (!(value >= 0.0f && value < static_cast<float>(ctx.numOutputs))) return SetResult::BadValue;
        out_ = static_cast<int>(value);
        return SetResult::Ok;
    case ParamId::Mute:
        muted_ = value >= 0.5f;
        mute_.setTarget(muted_ ? 0.0f : 1.0f, rampFor(false, 0, ctx));
        return SetResult::Ok;
    case ParamId::Follow: follow_ = value >= 0.5f; return SetResult::Ok;
    case ParamId::Stretch:
        // Chosen at creation: the stretcher is built on the control thread before insertion.
        if (inserted_ || !(value == 0.0f || value == 1.0f || value == 2.0f || value == 3.0f)) return SetResult::BadValue;
        method_ = static_cast<stretch::Method>(static_cast<int>(value));
        return SetResult::Ok;
    case ParamId::Pitch:
        if (!(value >= -24.0f && value <= 24.0f)) return SetResult::BadValue;
        pitchSemitones_ = value;
        return SetResult::Ok;
    case ParamId::OutMask:
        if (!(value >= 0.0f && value < 16777216.0f && value == std::floor(value))) return SetResult::BadValue;
        if (static_cast<uint32_t>(value) >> ctx.numOutputs) return SetResult::BadValue; // a channel that does not exist
        outMask_ = static_cast<uint32_t>(value);
        return SetResult::Ok;
    case ParamId::Bpm:
        if (!(value == 0.0f || value == -1.0f || (value >= 20.0f && value <= 400.0f))) return SetResult::BadValue;
        materialBpm_ = value;
        return SetResult::Ok;
    case ParamId::Align:
        if (!(value == 0.0f || value == 1.0f)) return SetResult::BadValue;
        align_ = value == 1.0f;
        return SetResult::Ok;
    case ParamId::Downbeat:
        if (!(value >= -1.0f && value < 2147483648.0f && value == std::floor(value))) return SetResult::BadValue;
        downbeat_ = static_cast<int64_t>(value);
        return SetResult::Ok;
    case ParamId::StartFrac:
        if (!(value >= 0.0f && value < 1.0f)) return SetResult::BadValue;
        startFrac_ = value;
        if (const BufferData* b = ctx.buffer(buf_); b && inserted_) setPosition(std::floor(static_cast<double>(value) * static_cast<double>(b->numFrames)));
        relock_ = true;
        return SetResult::Ok;
    default: return Node::setParam(id, value, rampSamples, explicitRamp, ctx);
    }
}

bool Player::getParam(ParamId id, float& value) const noexcept {
    switch (id) {
    case ParamId::Gain: value = gain_.target(); return true;
    case ParamId::Pan: value = pan_.target(); return true;
    case ParamId::Rate: value = rate_.target(); return true;
    case ParamId::Buf: value = static_cast<float>(buf_); return true;
    case ParamId::Loop: value = loop_ ? 1.0f : 0.0f; return true;
    case ParamId::Start: value = static_cast<float>(position()); return true;
    case ParamId::Out: value = static_cast<float>(out_); return true;
    case ParamId::Mute: value = muted_ ? 1.0f : 0.0f; return true;
    case ParamId::Follow: value = follow_ ? 1.0f : 0.0f; return true;
    case ParamId::Stretch: value = static_cast<float>(static_cast<int>(method_)); return true;
    case ParamId::Pitch: value = pitchSemitones_; return true;
    case ParamId::OutMask: value = static_cast<float>(outMask_); return true;
    case ParamId::Bpm: value = static_cast<float>(materialBpm_); return true;
    case ParamId::Align: value = align_ ? 1.0f : 0.0f; return true;
    case ParamId::Downbeat: value = static_cast<float>(downbeat_); return true;
    case ParamId::StartFrac: value = startFrac_; return true;
    default: return Node::getParam(id, value);
    }
}

bool Player::readyToStart(const ProcessContext& ctx) const noexcept {
    const BufferData* b = ctx.buffer(buf_);
    return b && b->numFrames > 0 && b->numChannels > 0;
}

void Player::prepare(const NodeSetup& setup) {
    if (method_ == stretch::Method::Rate || voice_) return;
    const double sampleRate = setup.config.sampleRate;
    const int blockSize = setup.config.blockSize;
    // What a stretch voice allocates at 48 kHz stereo (mallinfo2 around this function): Rubber
    // Band R2 8.0 MB, R3 7.3 MB, SoundTouch 0.8 MB; scaled with the sample rate.
    const double mb = method_ == stretch::Method::Wsola ? 1.0 : 8.0;
    memoryLease = setup.budget.reserve(static_cast<int64_t>(mb * 1048576.0 * sampleRate / 48000.0),
                                       std::string("a ") + stretch::methodName(method_) + " stretch voice for node " + std::to_string(id()));
    constexpr int kMaxFeed = 4096;
    const double speed = std::clamp(static_cast<double>(rate_.target()), 0.25, 4.0);
    voice_ = std::make_unique<StretchVoice>(
        stretch::Stretcher::create(method_, 2, sampleRate, kMaxFeed, 1.0 / speed, std::exp2(pitchSemitones_ / 12.0)));
    outBuf_.assign(static_cast<size_t>(2 * blockSize), 0.0f);
    blockSize_ = blockSize;
    if (setup.stretchWorker) {
        voice_->sheddable = true; // a player can play on at varispeed (ShedPolicy)
        voice_->nodeId = id();
        setup.stretchWorker->add(voice_.get());
    }
}

void Player::onBegin(ProcessContext& ctx) noexcept {
    relock_ = true;
    if (voice_) {
        // Prime at the ratio playback starts with (Rubber Band: ratios before the start pad),
        // unless a pre-roll did already.
        if (!preRolled_) primeVoice(ctx, stretchSpeed(ctx, ctx.tempoBpm), true, startedAt);
        preRolled_ = false;
        return;
    }
    if (startFrac_ >= 0.0f)
        if (const BufferData* b = ctx.buffer(buf_)) setPosition(std::floor(static_cast<double>(startFrac_) * static_cast<double>(b->numFrames)));
    alignStart(ctx, startedAt);
    startIdx_ = idx_;
}

void Player::alignStart(const ProcessContext& ctx, int64_t startSample) noexcept {
    if (!align_ || !follow_ || !ctx.players.followTempo) return;
    const BufferData* b = ctx.buffer(buf_);
    if (!b || b->numFrames <= 0) return;
    const int64_t downbeat = downbeat_ >= 0 ? downbeat_ : b->analysedDownbeat.load(std::memory_order_relaxed);
    if (downbeat < 0) return;
    // Source frames per clock beat at this rate; the clock's next bar line from the start.
    double bpm = ctx.tempoBpm;
    const double beats = ctx.beatsAhead(startSample, bpm);
    const int bpb = std::max(1, ctx.beatsPerBar);
    const double nextBar = std::ceil(beats / bpb - 1e-9) * bpb;
    const double perBeat = static_cast<double>(rate_.value()) * 60.0 / materialBpm(ctx) * ctx.sampleRate;
    const double perBar = perBeat * bpb;
    double p = static_cast<double>(downbeat) - (nextBar - beats) * perBeat;
    const auto frames = static_cast<double>(b->numFrames);
    if (loop_) p = std::fmod(std::fmod(p, frames) + frames, frames);
    else if (p < 0.0) p += std::ceil(-p / perBar) * perBar; // the material's downbeat a bar later
    if (p < frames) setPosition(p);
}

void Player::preRoll(ProcessContext& ctx, int64_t startSample) noexcept {
    if (!voice_ || !ctx.players.stretchAhead) return;
    const BufferData* b = ctx.buffer(buf_);
    if (!b || b->numFrames <= 0 || b->numChannels <= 0) return;
    if (!preRolled_) {
        // The speed at the start: the tempo then, with the changes already scheduled before it.
        double bpm = ctx.tempoBpm;
        ctx.beatsAhead(startSample, bpm);
        preRollSpeed_ = stretchSpeed(ctx, bpm);
        primeVoice(ctx, preRollSpeed_, true, startSample);
        preRolled_ = true;
    }
    takeSegments();
    fillAhead(*b, preRollSpeed_, blockSize_);
}

int64_t Player::fadeLength(const ProcessContext& ctx) const noexcept {
    return fadeSamples_ >= 0 ? fadeSamples_ : ctx.declickSamples;
}

void Player::skipFrames(double frames, const ProcessContext& ctx) noexcept {
    preRolled_ = false;
    double p = position() + frames * rate_.target();
    const BufferData* b = ctx.buffer(buf_);
    if (b && b->numFrames > 0 && loop_) {
        p = std::fmod(p, static_cast<double>(b->numFrames));
        if (p < 0) p += static_cast<double>(b->numFrames);
    }
    setPosition(p);
}

void Player::render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept {
    int i = offset;
    const int end = offset + numFrames;
    if (state_ == State::Pending && waitingForBuffer()) {
        if (!readyToStart(ctx)) return;
        begin(ctx, ctx.blockStartSample + i);
    }
    if (state_ == State::Pending) {
        if (scheduledStart >= ctx.blockStartSample + end && scheduledStart - ctx.blockStartSample <= kPreRollLead)
            preRoll(ctx, scheduledStart);
        if (scheduledStart < 0 || scheduledStart >= ctx.blockStartSample + end) return;
        const int at = static_cast<int>(std::max<int64_t>(i, scheduledStart - ctx.blockStartSample));
        begin(ctx, ctx.blockStartSample + at);
        i = at;
    }
    while (i < end && state_ != State::Ended) {
        int until = end;
        if (state_ == State::Running || state_ == State::Pausing || state_ == State::Paused) {
            if (scheduledStop >= 0) {
                const int64_t rel = scheduledStop - ctx.blockStartSample;
                if (rel <= i) { scheduledStop = -1; release(ctx, ctx.blockStartSample + i); }
                else if (rel < until) until = static_cast<int>(rel);
            }
        }
        if (!loop_ && state_ == State::Running && !voice_) {
            // Start the fade so that it ends on the last frame. (A stretched player reads ahead
            // of its output and times its end itself, in renderStretched.)
            const BufferData* b = ctx.buffer(buf_);
            const double r = rate_.value() * tempoFactor(ctx);
            if (b && b->numFrames > 0 && r != 0.0 && !rate_.ramping()) {
                const double left = r > 0 ? (static_cast<double>(b->numFrames) - position()) / r : (position() + 1.0) / -r;
                const double startFade = left - static_cast<double>(fadeLength(ctx));
                if (startFade <= 0.0) release(ctx, ctx.blockStartSample + i);
                else if (startFade < until - i) until = i + static_cast<int>(std::ceil(startFade));
            }
        }
        if (state_ == State::Paused) break;
        renderRange(ctx, bus, i, until);
        i = until;
    }
    finishSegment(ctx);
}

} // namespace loopd
