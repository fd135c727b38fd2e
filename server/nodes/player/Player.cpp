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
        id == ParamId::Pitch || id == ParamId::Follow || id == ParamId::Bpm)
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
        if (!(value == 0.0f || (value >= 20.0f && value <= 400.0f))) return SetResult::BadValue;
        materialBpm_ = value;
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
    feedBuf_.assign(static_cast<size_t>(2 * kMaxFeed), 0.0f);
    outBuf_.assign(static_cast<size_t>(2 * blockSize), 0.0f);
    outInter_.assign(static_cast<size_t>(2 * blockSize), 0.0f);
    blockSize_ = blockSize;
    if (setup.stretchWorker) {
        voice_->sheddable = true; // a player can play on at varispeed (ShedPolicy)
        voice_->nodeId = id();
        setup.stretchWorker->add(voice_.get());
    }
}

double Player::lockedTempoFactor(ProcessContext& ctx, int from, int to, double frames) noexcept {
    const double tf = tempoFactor(ctx);
    if (!follow_ || !ctx.followTempo || rate_.ramping() || to <= from) { relock_ = true; return tf; }
    const int64_t at = ctx.blockStartSample + from;
    if (relock_ || lockEpoch_ != ctx.clockEpoch) {
        lockEpoch_ = ctx.clockEpoch;
        lockBeats_ = ctx.beatsAt(at);
        lockPos_ = position();
        lockRate_ = rate_.value();
        relock_ = false;
        return tf;
    }
    // Position error against the grid, wrapped for loops.
    double e = position() - (lockPos_ + idealSource(ctx, at));
    if (loop_ && frames > 0) {
        e = std::fmod(e, frames);
        if (e > frames / 2) e -= frames;
        if (e < -frames / 2) e += frames;
    }
    if (std::fabs(e) < 1e-6) return tf; // on the grid (keeps rate-1 material bit-exact)
    const double nominal = rate_.value() * tf;
    const double corrected = std::clamp(nominal - e / (to - from), nominal * 0.98, nominal * 1.02);
    return corrected / rate_.value();
}

void Player::onBegin(ProcessContext& ctx) noexcept {
    relock_ = true;
    if (voice_) {
        // Prime at the ratio playback starts with (Rubber Band: ratios before the start pad),
        // unless a pre-roll did already.
        if (!preRolled_) primeVoice(ctx, stretchSpeed(ctx, ctx.tempoBpm));
        preRolled_ = false;
        return;
    }
    if (startFrac_ >= 0.0f)
        if (const BufferData* b = ctx.buffer(buf_)) setPosition(std::floor(static_cast<double>(startFrac_) * static_cast<double>(b->numFrames)));
    startIdx_ = idx_;
}

void Player::primeVoice(ProcessContext& ctx, double speed, bool fromStart) noexcept {
    // Whoever steps the voice (the worker, or this thread offline) primes it on its next step.
    segHead_ = segCount_ = 0;
    outSrc_ = lockOutSrc_ = 0.0;
    voice_->timeRatio.store(1.0 / speed, std::memory_order_relaxed);
    voice_->pitchScale.store(std::exp2(pitchSemitones_ / 12.0), std::memory_order_relaxed);
    realPushed_ = 0;
    voice_->realPushed.store(0, std::memory_order_relaxed);
    primeGen_ = voice_->primeRequest.fetch_add(1, std::memory_order_release) + 1;
    outputStarted_ = false;
    voice_->playing.store(false, std::memory_order_relaxed);
    sourceDone_ = false;
    coverRunning_ = false;
    spliceLeft_ = 0;
    fadeInLeft_ = 0;
    shed_ = rejoin_ = false;
    if (startFrac_ >= 0.0f && fromStart)
        if (const BufferData* b = ctx.buffer(buf_)) setPosition(std::floor(static_cast<double>(startFrac_) * static_cast<double>(b->numFrames)));
    startIdx_ = idx_;
}

void Player::followShedRequest(ProcessContext& ctx, const BufferData& b, double speed, int64_t at) noexcept {
    StretchVoice& v = *voice_;
    const bool request = v.shedRequest.load(std::memory_order_acquire);
    if (request && rejoin_) {
        // Shed again while rejoining: the varispeed is playing already (the cover, from where
        // it stands); it simply goes on, and the re-primed stretcher is left to the next restore.
        // (Waiting for the rejoin to end instead left the request unheeded for as long as the
        // worker produced nothing: the rejoin's one-second limit counts only from its output.)
        rejoin_ = false;
        outputStarted_ = true;
        shed_ = true;
        outSrc_ = coverPos_ - static_cast<double>(startIdx_); // where the output stands (the grid's view)
        v.shed.store(true, std::memory_order_release);
    } else if (request && !shed_) {
        // From this block on the cover plays (it starts where the output stands, matched to its
        // last frames, see renderStretched); the worker leaves the voice alone once told.
        if (!outputStarted_) {
            // Shed before its stretched output began: the varispeed starts it, a follower where
            // its grid stands by now (the grid began at its start).
            outputStarted_ = true;
            coverRunning_ = false;
            if (follow_ && ctx.followTempo && !relock_ && lockEpoch_ == ctx.clockEpoch)
                outSrc_ = std::max(0.0, lockOutSrc_ + idealSource(ctx, at));
        }
        shed_ = true;
        v.shed.store(true, std::memory_order_release);
    } else if (!request && shed_) {
        const auto F = static_cast<double>(b.numFrames);
        double q = coverPos_;
        if (!loop_ && q >= F) return; // a one-shot with nothing left to stretch: it ends as it is
        if (loop_) { q = std::fmod(q, F); if (q < 0.0) q += F; }
        // Old output is dropped here (this thread reads it); old input is skipped by the worker
        // when it primes (this thread only writes it, the worker has not touched it since shed).
        while (v.output.read(outInter_.data(), static_cast<size_t>(blockSize_)) > 0) {}
        v.inputSkip.store(static_cast<int64_t>(v.input.readableFrames()), std::memory_order_relaxed);
        setPosition(std::floor(q));
        primeVoice(ctx, speed, false); // publishes inputSkip with the prime request
        coverPos_ = q;                 // the varispeed plays on from here
        coverRunning_ = true;
        relock_ = true;                // a follower's grid: anchored here, where the varispeed stood on it
        rejoin_ = true;
        rejoinAt_ = at;
        v.shed.store(false, std::memory_order_release);
    }
}

bool Player::rejoin(ProcessContext& ctx, int64_t at, double speed, int n) noexcept {
    // The stretched output begins where the varispeed stood at the re-prime; the varispeed has
    // moved on since: drop what it has passed (given up after a second: the lock chases the rest).
    if (at - rejoinAt_ > static_cast<int64_t>(ctx.sampleRate)) return true;
    StretchVoice& v = *voice_;
    for (;;) {
        const double lag = coverPos_ - static_cast<double>(startIdx_) - outSrc_; // source frames
        const int k = static_cast<int>(std::min<double>({lag / speed, static_cast<double>(n), static_cast<double>(v.output.readableFrames())}));
        if (k <= 0) return lag < speed;
        v.output.read(outInter_.data(), static_cast<size_t>(k));
        takeSegments();
        consumeOutput(static_cast<double>(k), speed);
    }
}

void Player::preRoll(ProcessContext& ctx, int64_t startSample) noexcept {
    if (!voice_ || !ctx.stretchAhead) return;
    const BufferData* b = ctx.buffer(buf_);
    if (!b || b->numFrames <= 0 || b->numChannels <= 0) return;
    if (!preRolled_) {
        // The speed at the start: the tempo then, with the changes already scheduled before it.
        double bpm = ctx.tempoBpm;
        ctx.beatsAhead(startSample, bpm);
        preRollSpeed_ = stretchSpeed(ctx, bpm);
        primeVoice(ctx, preRollSpeed_);
        preRolled_ = true;
    }
    takeSegments();
    fillAhead(*b, preRollSpeed_, blockSize_);
}

void Player::takeSegments() noexcept {
    // What the stretcher was given, and at which speed (see StretchVoice::segments).
    for (StretchVoice::Segment seg; voice_->segments.tryPop(seg);)
        if (seg.generation == primeGen_) queueOutput(seg.out, seg.speed);
}

void Player::pushSource(const BufferData& b, int frames) noexcept {
    StretchVoice& v = *voice_;
    const int64_t F = b.numFrames;
    const float* srcL = b.channel(0);
    const float* srcR = b.channel(b.numChannels == 1 ? 0 : 1);
    const int maxFeed = static_cast<int>(feedBuf_.size() / 2);
    frames = std::min({frames, maxFeed, static_cast<int>(v.input.writableFrames())});
    float* feed[2] = {feedBuf_.data(), feedBuf_.data() + maxFeed};
    int real = 0;
    for (int k = 0; k < frames; ++k) {
        if (idx_ >= F && loop_) idx_ -= F;
        if (idx_ >= 0 && idx_ < F) {
            feed[0][k] = srcL[idx_];
            feed[1][k] = srcR[idx_];
            ++idx_;
            ++real;
            // The last real frame is in: from here `owed` counts down to its way out (the engine
            // may hold a lot of output, R3 ~2000 frames; waiting for it to ask for more input
            // before timing the end made one-shots 1.8 % long).
            if (idx_ >= F && !loop_) sourceDone_ = true;
        } else {
            feed[0][k] = feed[1][k] = 0.0f;
            sourceDone_ = true;
        }
    }
    const float* in[2] = {feed[0], feed[1]};
    v.input.writePlanar(in, 0, static_cast<size_t>(frames), 2);
    realPushed_ += real;
    v.realPushed.store(realPushed_, std::memory_order_release);
}

void Player::fillAhead(const BufferData& b, double speed, int n) noexcept {
    StretchVoice& v = *voice_;
    const double inFlight = static_cast<double>(v.output.readableFrames()) + static_cast<double>(v.input.readableFrames()) / speed;
    const double want = aheadTarget_ + n - inFlight;
    if (want > 0.0) pushSource(b, static_cast<int>(std::ceil(want * speed)));
}

void Player::adaptAhead(const ProcessContext& ctx, double ready, bool underrun, int n) noexcept {
    // The fill target follows the fill level: emergency (an underrun) doubles it; urgent (less
    // than a quarter of it was ready, at most once per 100 ms) raises it by a quarter; relaxed
    // (10 s with neither) lowers it by a quarter, but not under 2048 frames nor under three of
    // the worker's longest recent steps for this voice (its measured cost: R3 works in bursts).
    const double burstFrames = voice_->burstSeconds.load(std::memory_order_relaxed) * ctx.sampleRate;
    const double floor = std::min(8192.0, std::max(2048.0, 3.0 * burstFrames));
    sinceUrgent_ += n;
    if (underrun) {
        aheadTarget_ = std::min(aheadTarget_ * 2.0, 8192.0);
        cleanFrames_ = 0;
    } else if (ready < 0.25 * aheadTarget_ && sinceUrgent_ > static_cast<int64_t>(0.1 * ctx.sampleRate)) {
        aheadTarget_ = std::min(aheadTarget_ * 1.25, 8192.0);
        cleanFrames_ = 0;
        sinceUrgent_ = 0;
    } else if ((cleanFrames_ += n) > static_cast<int64_t>(10 * ctx.sampleRate)) {
        aheadTarget_ *= 0.75;
        cleanFrames_ = 0;
    }
    aheadTarget_ = std::max(aheadTarget_, floor);
}

bool Player::catchUp(ProcessContext& ctx, int64_t at, double speed, int n) noexcept {
    // Given up after half a second (a worker that cannot get ahead): the lock chases the rest.
    if (at - startedAt > static_cast<int64_t>(0.5 * ctx.sampleRate)) return true;
    StretchVoice& v = *voice_;
    bool dropped = false;
    for (;;) {
        const double lag = idealSource(ctx, at) - (outSrc_ - lockOutSrc_); // source frames
        const int k = static_cast<int>(std::min<double>({lag / speed, static_cast<double>(n), static_cast<double>(v.output.readableFrames())}));
        if (k <= 0) {
            if (dropped) fadeInLeft_ = fadeLength(ctx);
            return lag < speed;
        }
        v.output.read(outInter_.data(), static_cast<size_t>(k));
        takeSegments();
        consumeOutput(static_cast<double>(k), speed);
        dropped = true;
    }
}

void Player::queueOutput(double frames, double speed) noexcept {
    if (frames <= 0.0) return;
    if (segCount_ > 0) {
        OutSegment& tail = segs_[(segHead_ + segCount_ - 1) % kMaxSegments];
        // Same speed, or no room left: extend the newest segment.
        if (tail.speed == speed || segCount_ == kMaxSegments) { tail.out += frames; return; }
    }
    segs_[(segHead_ + segCount_) % kMaxSegments] = OutSegment{frames, speed};
    ++segCount_;
}

void Player::consumeOutput(double frames, double speed) noexcept {
    while (frames > 0.0 && segCount_ > 0) {
        OutSegment& head = segs_[segHead_];
        const double take = std::min(frames, head.out);
        outSrc_ += take * head.speed;
        head.out -= take;
        frames -= take;
        if (head.out <= 1e-9) { segHead_ = (segHead_ + 1) % kMaxSegments; --segCount_; }
    }
    if (frames > 0.0) outSrc_ += frames * speed; // more out than queued (rounding): current speed
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

namespace {
inline float at(const float* x, int64_t n, bool loop, int64_t idx) noexcept {
    if (idx >= 0 && idx < n) return x[idx];
    if (!loop) return 0.0f;
    idx %= n;
    return x[idx < 0 ? idx + n : idx];
}
} // namespace

void Player::renderRange(ProcessContext& ctx, Bus& bus, int from, int to) noexcept {
    const BufferData* b = ctx.buffer(buf_);
    if (outMask_ == 0 || !b || b->numChannels != 1 || !ctx.scratch) {
        renderRangeTo(ctx, bus, from, to);
        return;
    }
    // A mono source mapped onto several outputs: render once into the scratch block (as a
    // one-channel bus, no pan), then add it to every channel of the mask at full level.
    std::fill(ctx.scratch + from, ctx.scratch + to, 0.0f);
    Bus mono;
    mono.ch[0] = ctx.scratch;
    mono.numChannels = 1;
    const int savedOut = out_;
    out_ = 0;
    renderRangeTo(ctx, mono, from, to);
    out_ = savedOut;
    for (int c = 0; c < bus.numChannels && c < 32; ++c) {
        if (!(outMask_ & (1u << c))) continue;
        for (int i = from; i < to; ++i) bus.ch[c][i] += ctx.scratch[i];
    }
}

void Player::renderRangeTo(ProcessContext& ctx, Bus& bus, int from, int to) noexcept {
    if (from >= to || state_ == State::Ended) return;
    if (voice_) { renderStretched(ctx, bus, from, to); return; }
    const BufferData* b = ctx.buffer(buf_);
    if (!b || b->numFrames <= 0 || b->numChannels <= 0) {
        if (buf_ >= 0) { ctx.bufferMissing = true; ctx.missingBuffer = buf_; }
        // Keep the envelopes moving so that fades and releases still complete.
        const int64_t n = to - from;
        gain_.skip(n); pan_.skip(n); rate_.skip(n); mute_.skip(n); env_.skip(n); soloGain_.skip(n);
        return;
    }
    const int64_t F = b->numFrames;
    const int srcCh = std::min(b->numChannels, kMaxChannels);
    const bool mono = srcCh == 1;
    const bool toPair = out_ + 1 < bus.numChannels;
    // Output channel k of the source goes to bus channel out_+k.
    const float* src[kMaxChannels];
    for (int c = 0; c < srcCh; ++c) src[c] = b->channel(c);

    const bool staticGains = !gain_.ramping() && !pan_.ramping() && !mute_.ramping() && envelopeStatic();
    const bool staticRate = !rate_.ramping();
    const double tf = lockedTempoFactor(ctx, from, to, static_cast<double>(F));
    dsp::StereoGains pg = mono ? dsp::constantPowerPan(pan_.value()) : dsp::balance(pan_.value());

    int i = from;
    // Fast path: exact copy at rate 1 from an integer position with constant gains.
    if (staticGains && staticRate && rate_.value() * tf == 1.0 && frac_ == 0.0 && idx_ >= 0 && idx_ < F) {
        const float g = gain_.value() * mute_.value() * envelopeValue();
        while (i < to) {
            const int64_t p = idx_;
            const int n = static_cast<int>(std::min<int64_t>(to - i, F - p));
            if (mono) {
                const float* x = src[0] + p;
                if (toPair) {
                    float* L = bus.ch[out_] + i; float* R = bus.ch[out_ + 1] + i;
                    const float gl = g * pg.left, gr = g * pg.right;
                    for (int k = 0; k < n; ++k) { L[k] += gl * x[k]; R[k] += gr * x[k]; }
                } else {
                    float* L = bus.ch[out_] + i;
                    for (int k = 0; k < n; ++k) L[k] += g * x[k];
                }
            } else {
                for (int c = 0; c < srcCh && out_ + c < bus.numChannels; ++c) {
                    const float gc = g * (c == 0 ? pg.left : c == 1 ? pg.right : 1.0f);
                    const float* x = src[c] + p;
                    float* y = bus.ch[out_ + c] + i;
                    for (int k = 0; k < n; ++k) y[k] += gc * x[k];
                }
            }
            i += n;
            idx_ += n;
            if (idx_ >= F) {
                if (loop_) idx_ -= F;
                else { endNow(ctx, ctx.blockStartSample + i); return; }
            }
        }
        return;
    }

    // Fast path: constant gains and rate. Runs of frames whose four taps lie inside the buffer
    // go through a branch-free Hermite loop; the frames at the edges (wrap, end) take the
    // general step one at a time.
    if (staticGains && staticRate) {
        const double r = rate_.value() * tf;
        const float g = gain_.value() * mute_.value() * envelopeValue();
        const double lastInterior = static_cast<double>(F - 3); // i0 + 2 <= F - 1
        while (i < to) {
            int n = 0;
            const double pos = position();
            if (idx_ >= 1 && pos <= lastInterior) {
                // Conservative: stops one step early, so the run never reaches an edge tap.
                const double room = r > 0 ? (lastInterior - pos) / r : r < 0 ? (pos - 1.0) / -r : 1e18;
                n = static_cast<int>(std::min<double>(to - i, std::floor(room)));
            }
            if (n > 0) {
                interpolateRun(bus, src, srcCh, i, n, r, g, pg);
                i += n;
                continue;
            }
            if (!step(ctx, bus, src, srcCh, F, i, r, g, pg)) return;
            ++i;
        }
        return;
    }

    // General path: per-sample ramps and Hermite interpolation.
    for (; i < to; ++i) {
        const float g = gain_.next() * mute_.next() * nextEnvelope();
        if (pan_.ramping()) {
            const float p = pan_.next();
            pg = mono ? dsp::constantPowerPan(p) : dsp::balance(p);
        }
        const double r = (staticRate ? rate_.value() : rate_.next()) * tf;
        if (!step(ctx, bus, src, srcCh, F, i, r, g, pg)) return;
    }
}

void Player::renderStretched(ProcessContext& ctx, Bus& bus, int from, int to) noexcept {
    const BufferData* b = ctx.buffer(buf_);
    const int64_t n64 = to - from;
    if (!b || b->numFrames <= 0 || b->numChannels <= 0) {
        if (buf_ >= 0) { ctx.bufferMissing = true; ctx.missingBuffer = buf_; }
        gain_.skip(n64); pan_.skip(n64); rate_.skip(n64); mute_.skip(n64); env_.skip(n64); soloGain_.skip(n64);
        return;
    }
    const int64_t F = b->numFrames;
    const bool mono = b->numChannels == 1;
    const float* srcL = b->channel(0);
    const float* srcR = b->channel(mono ? 0 : 1);
    // Material frames per output frame; the stretcher makes 1/speed output frames of each.
    double speed = stretchSpeed(ctx, ctx.tempoBpm);
    const int64_t at = ctx.blockStartSample + from;
    StretchVoice& v = *voice_;
    if (ctx.stretchAhead) followShedRequest(ctx, *b, speed, at);
    takeSegments();
    // The grid is anchored where the player began; real time, the output may start later (an
    // immediate start waits for the stretcher's first output): it then catches up (catchUp).
    const bool locked = follow_ && ctx.followTempo && !rate_.ramping();
    if (locked) {
        if (relock_ || lockEpoch_ != ctx.clockEpoch) {
            // (A clock reset moves the grid: take it from here rather than chase the jump.)
            lockEpoch_ = ctx.clockEpoch;
            lockBeats_ = ctx.beatsAt(at);
            lockRate_ = rate_.value();
            lockOutSrc_ = outSrc_;
            relock_ = false;
        } else if (outputStarted_ || shed_) {
            // A Smith predictor: the stretcher's latency is outside the loop. What it already
            // holds plays at the speeds it was given, whatever is decided now; input handed
            // over now sounds once all of that is out. So the speed for it is the
            // tempo at that moment (tempo changes scheduled ahead are known: see TempoForecast),
            // trimmed by where the output will stand against the grid then; the error is
            // corrected over kLockSeconds of new input. After a tempo step this pulls back what
            // was in flight at the old speed at once, instead of waiting for it to show in the
            // output (it used to take a beat); a step timetagged ahead is not chased at all.
            // (Shed: the varispeed has nothing in flight, the speed set now plays now.)
            double src = outSrc_ - lockOutSrc_, inFlight = 0.0;
            for (int k = 0; k < segCount_ && !shed_; ++k) {
                const OutSegment& sg = segs_[(segHead_ + k) % kMaxSegments];
                src += sg.out * sg.speed;
                inFlight += sg.out;
            }
            // Source frames the stretcher has not been told a speed for yet: the speed set now
            // reaches the engine's held input too (R3 holds about 3/4 of its start delay before
            // a new ratio applies to it, see StretchVoice), so what sounds at the new speed
            // starts after the announced output plus what waits beyond that hold.
            if (!shed_) {
                const auto unannounced = static_cast<double>(realPushed_ - v.realFed.load(std::memory_order_acquire));
                const double ahead = std::max(0.0, unannounced - static_cast<double>(v.holdFrames.load(std::memory_order_relaxed)));
                src += ahead;
                inFlight += ahead / speed;
            }
            double bpmThen = 0.0;
            const double beatsThen = ctx.beatsAhead(at + static_cast<int64_t>(inFlight), bpmThen);
            const double nominal = stretchSpeed(ctx, bpmThen);
            const double e = src - idealSourceAtBeats(ctx, beatsThen);
            // A trim below 0.05 % is left out: Rubber Band R2 told a slightly different ratio
            // every block drifted 0.1 % from it (its hop rounding restarts on each change).
            constexpr double kLockSeconds = 0.05, kMaxTrim = 0.08, kDeadBand = 0.0005;
            const double trim = std::clamp(e / (kLockSeconds * ctx.sampleRate * nominal), -kMaxTrim, kMaxTrim);
            speed = nominal;
            if (std::fabs(trim) >= kDeadBand) speed = nominal * (1.0 - trim);
        }
    } else {
        relock_ = true;
    }
    rate_.skip(n64);
    v.timeRatio.store(1.0 / speed, std::memory_order_relaxed);
    v.pitchScale.store(std::exp2(pitchSemitones_ / 12.0), std::memory_order_relaxed);
    const int n = std::min(to - from, blockSize_);
    float* out[2] = {outBuf_.data(), outBuf_.data() + blockSize_};
    if (ctx.stretchAhead) {
        if (!shed_) fillAhead(*b, speed, n); // the worker does the stretching
    } else {
        // Offline: this thread steps the voice, pulled by what the block needs (deterministic).
        for (int guard = 0; static_cast<int>(v.output.readableFrames()) < n && guard < 256; ++guard) {
            v.step();
            if (static_cast<int>(v.output.readableFrames()) >= n) break;
            pushSource(*b, std::max(1, v.stretcher->inputWanted()));
        }
    }
    // Real time: start sounding once a pre-roll is buffered, so that the pipeline runs ahead
    // from the first block instead of limping through underruns while the worker fills it.
    bool preRolled = !shed_ && (outputStarted_ || !ctx.stretchAhead ||
                                static_cast<double>(v.output.readableFrames()) >= std::min(aheadTarget_, 1024.0));
    if (preRolled && !outputStarted_ && ctx.stretchAhead) {
        if (rejoin_) preRolled = rejoin(ctx, at, speed, n);
        else if (locked && !relock_) preRolled = catchUp(ctx, at, speed, n);
    }
    const auto ready = static_cast<double>(v.output.readableFrames());
    const int got = preRolled ? static_cast<int>(v.output.read(outInter_.data(), static_cast<size_t>(n))) : 0;
    if (ctx.stretchAhead && outputStarted_ && !shed_) adaptAhead(ctx, ready, got < n, n);
    for (int k = 0; k < got; ++k) {
        out[0][k] = outInter_[static_cast<size_t>(2 * k)];
        out[1][k] = outInter_[static_cast<size_t>(2 * k + 1)];
    }
    takeSegments(); // what the steps above handed over
    consumeOutput(static_cast<double>(got), speed);
    // Real output still to come: what waits in the input ring at the current speed, plus what
    // the stretcher was given and has not put out.
    double owed = static_cast<double>(realPushed_ - v.realFed.load(std::memory_order_acquire)) / speed;
    for (int k = 0; k < segCount_; ++k) {
        const OutSegment& sg = segs_[(segHead_ + k) % kMaxSegments];
        if (sg.speed > 0.0) owed += sg.out;
    }
    // Varispeed plays where the stretched output is missing: an underrun, a shed voice, a voice
    // rejoining after it was shed.
    const bool varispeed = outputStarted_ || shed_ || rejoin_;
    if (got < n && varispeed) {
        // Underrun: cover the rest with varispeed from where the stretched output stands (and
        // adaptAhead keeps more in flight from now on).
        if (outputStarted_ && !shed_) {
            ++ctx.stretchUnderruns;
            v.underruns.fetch_add(1, std::memory_order_relaxed);
        }
        // A cover that goes on over several blocks continues where it was; a new one starts
        // where the stretched output stands.
        double p = coverRunning_ && got == 0 ? coverPos_ : static_cast<double>(startIdx_) + outSrc_;
        const double Fd = static_cast<double>(F);
        auto tap = [&](const float* x, int64_t j) {
            if (loop_) { j %= F; if (j < 0) j += F; }
            return j >= 0 && j < F ? x[j] : 0.0f;
        };
        if (!(coverRunning_ && got == 0)) {
            // The stretcher's phases are its own: start the cover within +-64 source frames of
            // where the output stands, at the place that best continues the last two output
            // frames (value and slope), so that the splice below has little left to smooth.
            float y1[2], y2[2];
            for (int c = 0; c < 2; ++c) {
                y1[c] = got >= 1 ? out[c][got - 1] : lastOut_[c];
                y2[c] = got >= 2 ? out[c][got - 2] : got == 1 ? lastOut_[c] : prevOut_[c];
            }
            const float* src2[2] = {srcL, srcR};
            double best = 1e30, bestD = 0.0;
            for (int d = -64; d <= 64; ++d) {
                const auto j = static_cast<int64_t>(std::floor(p)) + d;
                double err = 0.0;
                for (int c = 0; c < 2; ++c) {
                    const float a = tap(src2[c], j), b2 = tap(src2[c], j + static_cast<int64_t>(std::lround(speed)));
                    const double ev = a - (2.0f * y1[c] - y2[c]), es = (b2 - a) / std::max(1.0, std::round(speed)) * speed - (y1[c] - y2[c]);
                    err += ev * ev + es * es;
                }
                if (err < best - 1e-12 || (err <= best + 1e-12 && std::abs(d) < std::fabs(bestD))) { best = err; bestD = d; }
            }
            p += bestD;
        }
        for (int k = got; k < n; ++k, p += speed) {
            double q = loop_ ? std::fmod(p, Fd) : p;
            if (q < 0) q += Fd;
            const auto i0 = static_cast<int64_t>(q);
            const dsp::Hermite4Weights w(static_cast<float>(q - static_cast<double>(i0)));
            float tl[4], tr[4];
            for (int t = 0; t < 4; ++t) {
                tl[t] = tap(srcL, i0 - 1 + t);
                tr[t] = tap(srcR, i0 - 1 + t);
            }
            out[0][k] = w(tl + 1);
            out[1][k] = w(tr + 1);
        }
        coverPos_ = p;
        if (shed_) outSrc_ = coverPos_ - static_cast<double>(startIdx_); // where the output stands
    } else if (got < n) {
        // Before the first stretched frame (the worker's pre-roll): silence, not an underrun.
        std::fill(out[0] + got, out[0] + n, 0.0f);
        std::fill(out[1] + got, out[1] + n, 0.0f);
    }
    // Where the stretched output and the varispeed cover meet, the waveform would step (the
    // stretcher's phases are its own): the step is spread over 64 frames as a decaying offset.
    const bool covering = got < n && varispeed;
    if (varispeed) {
        for (int k = 0; k < n; ++k) {
            const bool coverHere = covering && k >= got;
            if ((k == 0 && coverHere != coverRunning_) || (k > 0 && k == got && coverHere)) {
                for (int c = 0; c < 2; ++c) spliceOffset_[c] = lastOut_[c] - out[c][k];
                spliceLeft_ = kSpliceFrames;
            }
            if (spliceLeft_ > 0) {
                const float w = static_cast<float>(spliceLeft_) / static_cast<float>(kSpliceFrames);
                for (int c = 0; c < 2; ++c) out[c][k] += spliceOffset_[c] * w;
                --spliceLeft_;
            }
            prevOut_[0] = lastOut_[0];
            prevOut_[1] = lastOut_[1];
            lastOut_[0] = out[0][k];
            lastOut_[1] = out[1][k];
        }
    }
    coverRunning_ = covering;
    if (got > 0 && !outputStarted_) {
        outputStarted_ = true;
        rejoin_ = false;
        v.playing.store(true, std::memory_order_relaxed);
    }
    // Shed, a one-shot's real output left is what the varispeed has not read yet.
    int played = got;
    if (shed_) {
        played = n;
        if (!loop_) {
            sourceDone_ = true;
            owed = std::max(0.0, (static_cast<double>(F) - coverPos_) / speed);
        }
    }
    frac_ = 0.0;
    // A one-shot ends when its last real frame has come out (its fade timed to end there).
    // A one-shot fades out so that the fade ends on its last real frame: the fade starts at the
    // frame of this block where the real output left equals the fade.
    int releaseAt = -1;
    if (!loop_ && sourceDone_ && state_ == State::Running) {
        const double startIn = owed + static_cast<double>(played) - static_cast<double>(fadeLength(ctx));
        if (startIn < static_cast<double>(n)) releaseAt = static_cast<int>(std::clamp(std::ceil(startIn), 0.0, static_cast<double>(n - 1)));
    }
    const bool pair = out_ + 1 < bus.numChannels;
    dsp::StereoGains pg = mono ? dsp::constantPowerPan(pan_.value()) : dsp::balance(pan_.value());
    for (int k = 0; k < n; ++k) {
        const int i = from + k;
        if (k == releaseAt) release(ctx, ctx.blockStartSample + i);
        float g = gain_.next() * mute_.next() * nextEnvelope();
        if (fadeInLeft_ > 0 && k < got) {
            g *= 1.0f - static_cast<float>(fadeInLeft_) / static_cast<float>(fadeLength(ctx) + 1);
            --fadeInLeft_;
        }
        if (pan_.ramping()) { const float p = pan_.next(); pg = mono ? dsp::constantPowerPan(p) : dsp::balance(p); }
        if (mono) {
            const float s = out[0][k] * g;
            if (pair) { bus.ch[out_][i] += pg.left * s; bus.ch[out_ + 1][i] += pg.right * s; }
            else bus.ch[out_][i] += s;
        } else {
            bus.ch[out_][i] += g * pg.left * out[0][k];
            if (pair) bus.ch[out_ + 1][i] += g * pg.right * out[1][k];
        }
    }
    if (!loop_ && sourceDone_ && owed <= 0.0 && state_ != State::Ended && state_ != State::Releasing)
        endNow(ctx, ctx.blockStartSample + to);
}

void Player::interpolateRun(Bus& bus, const float* const* src, int srcCh, int i, int n, double r, float g,
                            dsp::StereoGains pg) noexcept {
    const int64_t idx0 = idx_;
    const double frac0 = frac_;
    // advance(r) with its split hoisted out of the loop: the same operations on the same values.
    const double whole = std::floor(r);
    const auto rInt = static_cast<int64_t>(whole);
    const double rFrac = r - whole;
    auto run = [&](auto&& emit) {
        int64_t idx = idx0;
        double frac = frac0;
        for (int k = 0; k < n; ++k) {
            emit(k, idx, dsp::Hermite4Weights(static_cast<float>(frac)));
            idx += rInt;
            frac += rFrac;
            if (frac >= 1.0) { frac -= 1.0; ++idx; }
        }
        idx_ = idx;
        frac_ = frac;
    };
    const bool pair = out_ + 1 < bus.numChannels;
    if (srcCh == 1 && pair) {
        const float* x = src[0];
        float* L = bus.ch[out_] + i;
        float* R = bus.ch[out_ + 1] + i;
        const float gl = g * pg.left, gr = g * pg.right;
        run([&](int k, int64_t idx, const dsp::Hermite4Weights& w) {
            const float s = w(x + idx);
            L[k] += gl * s;
            R[k] += gr * s;
        });
    } else if (srcCh == 2 && pair) {
        const float* a = src[0];
        const float* b = src[1];
        float* L = bus.ch[out_] + i;
        float* R = bus.ch[out_ + 1] + i;
        const float gl = g * pg.left, gr = g * pg.right;
        run([&](int k, int64_t idx, const dsp::Hermite4Weights& w) {
            L[k] += gl * w(a + idx);
            R[k] += gr * w(b + idx);
        });
    } else {
        bool any = false;
        for (int c = 0; c < srcCh && out_ + c < bus.numChannels; ++c) {
            const float* x = src[c];
            float* y = bus.ch[out_ + c] + i;
            const float gc = g * (c == 0 ? pg.left : c == 1 ? pg.right : 1.0f);
            run([&](int k, int64_t idx, const dsp::Hermite4Weights& w) { y[k] += gc * w(x + idx); });
            any = true;
        }
        if (!any) run([](int, int64_t, const dsp::Hermite4Weights&) {});
    }
}

bool Player::step(ProcessContext& ctx, Bus& bus, const float* const* src, int srcCh, int64_t F, int i, double r,
                  float g, dsp::StereoGains pg) noexcept {
    const bool mono = srcCh == 1;
    const bool toPair = out_ + 1 < bus.numChannels;
    const int64_t i0 = idx_;
    const float frac = static_cast<float>(frac_);
    const bool interior = i0 >= 1 && i0 + 2 < F;
    const dsp::Hermite4Weights w(frac);
    for (int c = 0; c < srcCh; ++c) {
        const float* x = src[c];
        float s;
        if (frac == 0.0f) {
            s = at(x, F, loop_, i0);
        } else if (interior) {
            s = w(x + i0);
        } else {
            const float taps[4] = {at(x, F, loop_, i0 - 1), at(x, F, loop_, i0), at(x, F, loop_, i0 + 1), at(x, F, loop_, i0 + 2)};
            s = w(taps + 1);
        }
        if (mono) {
            if (toPair) { bus.ch[out_][i] += g * pg.left * s; bus.ch[out_ + 1][i] += g * pg.right * s; }
            else bus.ch[out_][i] += g * s;
        } else if (out_ + c < bus.numChannels) {
            bus.ch[out_ + c][i] += g * s * (c == 0 ? pg.left : c == 1 ? pg.right : 1.0f);
        }
    }
    advance(r);
    if (idx_ >= F || idx_ < 0) {
        if (!loop_) {
            endNow(ctx, ctx.blockStartSample + i + 1);
            return false;
        }
        idx_ %= F;
        if (idx_ < 0) idx_ += F;
    }
    return true;
}

} // namespace loopd
