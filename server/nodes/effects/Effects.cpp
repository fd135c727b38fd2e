#include "server/nodes/effects/Effects.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dsp/Pan.h"

namespace loopd {
namespace {
bool inRange(float v, float lo, float hi) { return v >= lo && v <= hi; } // false for NaN
} // namespace

// ---------------------------------------------------------------------------------------------
// filter

FilterNode::FilterNode(int32_t id, double sampleRate, int numChannels, int blockSize)
    : EffectNode(id, blockSize), sampleRate_(sampleRate), svf_(static_cast<size_t>(std::max(1, numChannels))) {
    log2Cutoff_.reset(std::log2(1000.0f));
    q_.reset(0.7071f);
    depth_.reset(0.0f);
    modeWeight_[0].reset(1.0f);
    modeWeight_[1].reset(0.0f);
    modeWeight_[2].reset(0.0f);
}

SetResult FilterNode::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept {
    const int64_t ramp = rampFor(explicitRamp, rampSamples, ctx);
    switch (id) {
    case ParamId::CutoffHz:
        if (!inRange(value, 20.0f, 20000.0f)) return SetResult::BadValue;
        log2Cutoff_.setTarget(std::log2(value), ramp, explicitRamp); // sweeps are linear in octaves
        return SetResult::Ok;
    case ParamId::Q:
        if (!inRange(value, 0.5f, 40.0f)) return SetResult::BadValue;
        q_.setTarget(value, ramp, explicitRamp);
        return SetResult::Ok;
    case ParamId::LfoDepthOctaves:
        if (!inRange(value, 0.0f, 8.0f)) return SetResult::BadValue;
        depth_.setTarget(value, ramp, explicitRamp);
        return SetResult::Ok;
    default: break;
    }
    if (explicitRamp) return EffectNode::setParam(id, value, rampSamples, explicitRamp, ctx);
    switch (id) {
    case ParamId::Mode:
        if (!(value == 0.0f || value == 1.0f || value == 2.0f)) return SetResult::BadValue;
        mode_ = static_cast<int>(value);
        // Crossfade between the three outputs: a mode change never clicks.
        for (int m = 0; m < 3; ++m) modeWeight_[static_cast<size_t>(m)].setTarget(m == mode_ ? 1.0f : 0.0f, rampFor(false, 0, ctx));
        return SetResult::Ok;
    case ParamId::LfoRateHz:
        if (!inRange(value, 0.0f, 50.0f)) return SetResult::BadValue;
        lfoRateHz_ = value;
        return SetResult::Ok;
    case ParamId::LfoBeats:
        if (!(value == 0.0f || inRange(value, 1.0f / 64.0f, 64.0f))) return SetResult::BadValue;
        lfoBeats_ = value;
        return SetResult::Ok;
    case ParamId::LfoShape:
        if (!(value == 0.0f || value == 1.0f || value == 2.0f || value == 3.0f)) return SetResult::BadValue;
        shape_ = static_cast<dsp::LfoShape>(static_cast<int>(value));
        return SetResult::Ok;
    default: return EffectNode::setParam(id, value, rampSamples, explicitRamp, ctx);
    }
}

bool FilterNode::getParam(ParamId id, float& value) const noexcept {
    switch (id) {
    case ParamId::Mode: value = static_cast<float>(mode_); return true;
    case ParamId::CutoffHz: value = std::exp2(log2Cutoff_.target()); return true;
    case ParamId::Q: value = q_.target(); return true;
    case ParamId::LfoRateHz: value = lfoRateHz_; return true;
    case ParamId::LfoBeats: value = lfoBeats_; return true;
    case ParamId::LfoDepthOctaves: value = depth_.target(); return true;
    case ParamId::LfoShape: value = static_cast<float>(static_cast<int>(shape_)); return true;
    default: return EffectNode::getParam(id, value);
    }
}

void FilterNode::process(ProcessContext& ctx, Bus& bus, int offset, int numFrames, const float* wet) noexcept {
    const int nc = std::min(bus.numChannels, static_cast<int>(svf_.size()));
    const double beatsPerSample = ctx.tempoBpm / 60.0 / sampleRate_;
    const bool lfoOn = lfoBeats_ > 0.0f || lfoRateHz_ > 0.0f;
    for (int k = 0; k < numFrames; ++k) {
        const float depth = depth_.next();
        double octaves = log2Cutoff_.next();
        if (lfoOn && depth != 0.0f) {
            double phase;
            if (lfoBeats_ > 0.0f) {
                // Locked to the clock: one cycle every lfoBeats beats, in phase with the beat grid.
                const double b = (ctx.beats + k * beatsPerSample) / lfoBeats_;
                phase = b - std::floor(b);
            } else {
                phase = freePhase_;
            }
            octaves += depth * dsp::lfoValue(shape_, phase);
        }
        if (lfoBeats_ <= 0.0f && lfoRateHz_ > 0.0f) {
            freePhase_ += lfoRateHz_ / sampleRate_;
            freePhase_ -= std::floor(freePhase_);
        }
        const double cutoff = std::exp2(octaves);
        const float q = q_.next();
        const float wl = modeWeight_[0].next(), wh = modeWeight_[1].next(), wb = modeWeight_[2].next();
        const int i = offset + k;
        for (int c = 0; c < nc; ++c) {
            dsp::Svf& f = svf_[static_cast<size_t>(c)];
            f.setCutoff(cutoff, q, sampleRate_);
            const auto o = f.process(bus.ch[c][i]);
            const double y = wl * o.low + wh * o.high + wb * o.band;
            bus.ch[c][i] = mixWet(bus.ch[c][i], static_cast<float>(y), wet[k]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// delay

DelayNode::DelayNode(int32_t id, double sampleRate, int numChannels, int blockSize)
    : EffectNode(id, blockSize), sampleRate_(sampleRate) {
    lines_.resize(static_cast<size_t>(std::max(1, numChannels)));
    for (auto& l : lines_) l.prepare(static_cast<int>(kMaxSeconds * sampleRate) + 8);
    delay_.reset(static_cast<float>(delaySeconds_ * sampleRate));
    feedback_.reset(0.3f);
    mix_.reset(0.3f);
}

double DelayNode::targetSamples(const ProcessContext& ctx) const noexcept {
    const double seconds = delayBeats_ > 0.0f ? delayBeats_ * 60.0 / ctx.tempoBpm : delaySeconds_;
    return std::clamp(seconds * sampleRate_, 1.0, kMaxSeconds * sampleRate_);
}

SetResult DelayNode::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept {
    const int64_t ramp = rampFor(explicitRamp, rampSamples, ctx);
    switch (id) {
    case ParamId::Feedback:
        if (!inRange(value, 0.0f, 0.99f)) return SetResult::BadValue;
        feedback_.setTarget(value, ramp, explicitRamp);
        return SetResult::Ok;
    case ParamId::Mix:
        if (!inRange(value, 0.0f, 1.0f)) return SetResult::BadValue;
        mix_.setTarget(value, ramp, explicitRamp);
        return SetResult::Ok;
    default: break;
    }
    if (explicitRamp) return EffectNode::setParam(id, value, rampSamples, explicitRamp, ctx);
    switch (id) {
    case ParamId::DelaySeconds:
        if (!inRange(value, 1.0f / static_cast<float>(sampleRate_), static_cast<float>(kMaxSeconds))) return SetResult::BadValue;
        delaySeconds_ = value;
        delayBeats_ = 0.0f;
        if (!inserted_) delay_.reset(static_cast<float>(targetSamples(ctx)));
        return SetResult::Ok;
    case ParamId::DelayBeats:
        if (!inRange(value, 1.0f / 64.0f, 32.0f)) return SetResult::BadValue;
        delayBeats_ = value;
        if (!inserted_) delay_.reset(static_cast<float>(targetSamples(ctx)));
        return SetResult::Ok;
    case ParamId::PingPong: pingpong_ = value >= 0.5f; return SetResult::Ok;
    default: return EffectNode::setParam(id, value, rampSamples, explicitRamp, ctx);
    }
}

bool DelayNode::getParam(ParamId id, float& value) const noexcept {
    switch (id) {
    case ParamId::DelaySeconds: value = delaySeconds_; return true;
    case ParamId::DelayBeats: value = delayBeats_; return true;
    case ParamId::Feedback: value = feedback_.target(); return true;
    case ParamId::Mix: value = mix_.target(); return true;
    case ParamId::PingPong: value = pingpong_ ? 1.0f : 0.0f; return true;
    default: return EffectNode::getParam(id, value);
    }
}

void DelayNode::process(ProcessContext& ctx, Bus& bus, int offset, int numFrames, const float* wet) noexcept {
    // A changed time (or a tempo change of a beat delay) glides over 50 ms: no zipper, no jump.
    const double want = targetSamples(ctx);
    if (std::fabs(want - static_cast<double>(delay_.target())) > 1e-3)
        delay_.setTarget(static_cast<float>(want), static_cast<int64_t>(0.05 * sampleRate_));
    const int nc = std::min(bus.numChannels, static_cast<int>(lines_.size()));
    for (int k = 0; k < numFrames; ++k) {
        const double d = delay_.next();
        const float fb = feedback_.next(), mix = mix_.next();
        const int i = offset + k;
        float echo[kMaxChannels];
        for (int c = 0; c < nc; ++c) echo[c] = lines_[static_cast<size_t>(c)].read(d);
        for (int c = 0; c < nc; ++c) {
            const float x = bus.ch[c][i];
            // Ping-pong: each side's echo feeds the other side.
            const float back = pingpong_ && nc >= 2 && c < 2 ? echo[1 - c] : echo[c];
            lines_[static_cast<size_t>(c)].write(x + fb * back);
            bus.ch[c][i] = mixWet(x, (1.0f - mix) * x + mix * echo[c], wet[k]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// reverb

ReverbNode::ReverbNode(int32_t id, double sampleRate, int blockSize) : EffectNode(id, blockSize) {
    reverb_.prepare(sampleRate);
    reverb_.setRoom(room_);
    reverb_.setDamping(damping_);
    mix_.reset(0.3f);
}

SetResult ReverbNode::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept {
    switch (id) {
    case ParamId::Mix:
        if (!inRange(value, 0.0f, 1.0f)) return SetResult::BadValue;
        mix_.setTarget(value, rampFor(explicitRamp, rampSamples, ctx), explicitRamp);
        return SetResult::Ok;
    case ParamId::Room:
        if (explicitRamp) return SetResult::NotRampable;
        if (!inRange(value, 0.0f, 1.0f)) return SetResult::BadValue;
        room_ = value;
        reverb_.setRoom(value);
        return SetResult::Ok;
    case ParamId::Damping:
        if (explicitRamp) return SetResult::NotRampable;
        if (!inRange(value, 0.0f, 1.0f)) return SetResult::BadValue;
        damping_ = value;
        reverb_.setDamping(value);
        return SetResult::Ok;
    default: return EffectNode::setParam(id, value, rampSamples, explicitRamp, ctx);
    }
}

bool ReverbNode::getParam(ParamId id, float& value) const noexcept {
    switch (id) {
    case ParamId::Mix: value = mix_.target(); return true;
    case ParamId::Room: value = room_; return true;
    case ParamId::Damping: value = damping_; return true;
    default: return EffectNode::getParam(id, value);
    }
}

void ReverbNode::process(ProcessContext&, Bus& bus, int offset, int numFrames, const float* wet) noexcept {
    constexpr float kWetScale = 3.0f;
    const bool stereo = bus.numChannels >= 2;
    for (int k = 0; k < numFrames; ++k) {
        const int i = offset + k;
        const float mix = mix_.next();
        const float xl = bus.ch[0][i], xr = stereo ? bus.ch[1][i] : xl;
        float wl, wr;
        reverb_.process(xl, xr, wl, wr);
        bus.ch[0][i] = mixWet(xl, (1.0f - mix) * xl + mix * kWetScale * wl, wet[k]);
        if (stereo) bus.ch[1][i] = mixWet(xr, (1.0f - mix) * xr + mix * kWetScale * wr, wet[k]);
    }
}

// ---------------------------------------------------------------------------------------------
// stutter

StutterNode::StutterNode(int32_t id, double sampleRate, int numChannels, int blockSize)
    : EffectNode(id, blockSize), sampleRate_(sampleRate), numChannels_(std::max(1, numChannels)) {
    crossfade_ = std::max(8, static_cast<int>(0.002 * sampleRate)); // 2 ms
    maxSlice_ = static_cast<int>(kMaxSliceSeconds * sampleRate);
    ringSize_ = 1;
    while (ringSize_ < maxSlice_ + crossfade_ + 8) ringSize_ <<= 1;
    ringMask_ = ringSize_ - 1;
    ring_.assign(static_cast<size_t>(numChannels_ * ringSize_), 0.0f);
    slice_.assign(static_cast<size_t>(numChannels_ * (crossfade_ + maxSlice_)), 0.0f);
    repeatMix_.reset(0.0f);
}

SetResult StutterNode::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept {
    if (explicitRamp && (id == ParamId::Engage || id == ParamId::Division)) return SetResult::NotRampable;
    switch (id) {
    case ParamId::Engage: engage_ = value >= 0.5f; return SetResult::Ok;
    case ParamId::Division:
        if (!inRange(value, 1.0f, 64.0f)) return SetResult::BadValue;
        division_ = value;
        return SetResult::Ok;
    default: return EffectNode::setParam(id, value, rampSamples, explicitRamp, ctx);
    }
}

bool StutterNode::getParam(ParamId id, float& value) const noexcept {
    switch (id) {
    case ParamId::Engage: value = engage_ ? 1.0f : 0.0f; return true;
    case ParamId::Division: value = division_; return true;
    default: return EffectNode::getParam(id, value);
    }
}

void StutterNode::capture(const ProcessContext& ctx, int numChannels) noexcept {
    // The last slice before this grid point, plus the crossfade's worth of audio before it.
    const double sliceBeats = 4.0 / division_;
    sliceLength_ = std::clamp(static_cast<int>(std::lround(sliceBeats * 60.0 / ctx.tempoBpm * sampleRate_)), crossfade_ * 2, maxSlice_);
    const int total = crossfade_ + sliceLength_;
    for (int c = 0; c < numChannels; ++c) {
        const float* ring = ring_.data() + static_cast<size_t>(c) * static_cast<size_t>(ringSize_);
        float* dst = slice_.data() + static_cast<size_t>(c) * static_cast<size_t>(crossfade_ + maxSlice_);
        for (int j = 0; j < total; ++j) dst[j] = ring[(ringWrite_ - total + j) & ringMask_];
    }
    slicePos_ = 0;
}

void StutterNode::process(ProcessContext& ctx, Bus& bus, int offset, int numFrames, const float* wet) noexcept {
    const int nc = std::min(bus.numChannels, numChannels_);
    const double beatsPerSample = ctx.tempoBpm / 60.0 / sampleRate_;
    const double sliceBeats = 4.0 / division_;
    const size_t sliceStride = static_cast<size_t>(crossfade_ + maxSlice_);
    for (int k = 0; k < numFrames; ++k) {
        const int i = offset + k;
        if (engage_ && state_ == State::Live) state_ = State::Armed;
        if (!engage_ && state_ != State::Live && repeatMix_.target() != 0.0f) repeatMix_.setTarget(0.0f, crossfade_);
        if (state_ == State::Armed) {
            if (!engage_) {
                state_ = State::Live;
            } else {
                // The first frame at or after a grid line of the clock (in slices of sliceBeats).
                const double b = ctx.beats + k * beatsPerSample;
                const double before = b - beatsPerSample;
                const double grid = std::ceil(before / sliceBeats - 1e-9) * sliceBeats;
                if (grid <= b + 1e-9 && grid > before + 1e-9) {
                    capture(ctx, nc);
                    state_ = State::Repeating;
                    repeatMix_.setTarget(1.0f, crossfade_);
                }
            }
        }
        const float mixAmount = repeatMix_.next();
        for (int c = 0; c < nc; ++c) {
            const float x = bus.ch[c][i];
            ring_[static_cast<size_t>(c) * static_cast<size_t>(ringSize_) + static_cast<size_t>(ringWrite_)] = x;
            float y = x;
            if (state_ == State::Repeating) {
                const float* s = slice_.data() + static_cast<size_t>(c) * sliceStride;
                const float* slice = s + crossfade_; // s[0 .. crossfade) is the audio just before it
                y = slice[slicePos_];
                const int fadeFrom = sliceLength_ - crossfade_;
                if (slicePos_ >= fadeFrom) {
                    // Towards the wrap, blend into the audio that preceded the slice, so that the
                    // repeat's first frame follows on seamlessly.
                    const int j = slicePos_ - fadeFrom;
                    const float a = static_cast<float>(j + 1) / static_cast<float>(crossfade_);
                    y = y * (1.0f - a) + s[j] * a;
                }
            }
            bus.ch[c][i] = mixWet(x, mixWet(x, y, mixAmount), wet[k]);
        }
        ringWrite_ = (ringWrite_ + 1) & ringMask_;
        if (state_ == State::Repeating) {
            if (++slicePos_ >= sliceLength_) slicePos_ = 0;
            if (!engage_ && !repeatMix_.ramping() && repeatMix_.value() == 0.0f) state_ = State::Live;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// limiter and gain

LimiterNode::LimiterNode(int32_t id, double sampleRate, int numChannels, int blockSize)
    : EffectNode(id, blockSize), scratch_(static_cast<size_t>(std::max(1, numChannels) * blockSize)), blockSize_(blockSize) {
    limiter_.prepare(sampleRate, std::max(1, numChannels), {});
}

SetResult LimiterNode::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept {
    if (id != ParamId::CeilingDb) return EffectNode::setParam(id, value, rampSamples, explicitRamp, ctx);
    if (explicitRamp) return SetResult::NotRampable;
    if (!inRange(value, -40.0f, 0.0f)) return SetResult::BadValue;
    ceilingDb_ = value;
    limiter_.setCeilingDb(value);
    return SetResult::Ok;
}

bool LimiterNode::getParam(ParamId id, float& value) const noexcept {
    if (id != ParamId::CeilingDb) return EffectNode::getParam(id, value);
    value = ceilingDb_;
    return true;
}

void LimiterNode::process(ProcessContext&, Bus& bus, int offset, int numFrames, const float* wet) noexcept {
    const int nc = std::min(bus.numChannels, static_cast<int>(scratch_.size()) / blockSize_);
    float* ch[kMaxChannels] = {};
    for (int c = 0; c < nc; ++c) {
        ch[c] = scratch_.data() + static_cast<size_t>(c) * static_cast<size_t>(blockSize_);
        std::memcpy(ch[c] + offset, bus.ch[c] + offset, sizeof(float) * static_cast<size_t>(numFrames));
    }
    limiter_.process(ch, offset, numFrames);
    for (int c = 0; c < nc; ++c)
        for (int k = 0; k < numFrames; ++k) bus.ch[c][offset + k] = mixWet(bus.ch[c][offset + k], ch[c][offset + k], wet[k]);
}

GainNode::GainNode(int32_t id, int blockSize) : EffectNode(id, blockSize) { gain_.reset(1.0f); }

SetResult GainNode::setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept {
    if (id != ParamId::GainDb) return EffectNode::setParam(id, value, rampSamples, explicitRamp, ctx);
    if (!inRange(value, -120.0f, 24.0f)) return SetResult::BadValue;
    gainDb_ = value;
    gain_.setTarget(value <= -120.0f ? 0.0f : dsp::dbToGain(value), rampFor(explicitRamp, rampSamples, ctx), explicitRamp);
    return SetResult::Ok;
}

bool GainNode::getParam(ParamId id, float& value) const noexcept {
    if (id != ParamId::GainDb) return EffectNode::getParam(id, value);
    value = gainDb_;
    return true;
}

void GainNode::process(ProcessContext&, Bus& bus, int offset, int numFrames, const float* wet) noexcept {
    for (int k = 0; k < numFrames; ++k) {
        const float g = gain_.next();
        for (int c = 0; c < bus.numChannels; ++c) bus.ch[c][offset + k] = mixWet(bus.ch[c][offset + k], bus.ch[c][offset + k] * g, wet[k]);
    }
}

} // namespace loopd
