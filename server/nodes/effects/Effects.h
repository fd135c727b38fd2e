#pragma once
// The effect nodes of a group's chain. Each processes the group's bus in place at its
// position and takes `bypass` (click-free); parameter names are part of the OSC contract.
//   filter  — mode lp|hp|bp, cutoffHz, q, lfoRateHz or lfoBeats (tempo-synced), lfoDepthOctaves, lfoShape
//   delay   — delaySeconds or delayBeats (follows the tempo), feedback, mix, pingpong
//   reverb  — room, damping, mix
//   stutter — engage, division (16 = sixteenth notes), on the clock's grid
//   limiter — ceilingDb (the master limiter's algorithm; adds its 1.5 ms look-ahead)
//   gain    — gainDb
#include <array>
#include <memory>
#include <vector>

#include "dsp/DelayLine.h"
#include "dsp/Limiter.h"
#include "dsp/Reverb.h"
#include "dsp/Svf.h"
#include "server/nodes/effects/EffectNode.h"

namespace loopd {

class FilterNode final : public EffectNode {
public:
    const char* typeName() const noexcept override { return "filter"; }
    FilterNode(int32_t id, double sampleRate, int numChannels, int blockSize);
    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;

protected:
    void process(ProcessContext& ctx, Bus& bus, int offset, int numFrames, const float* wet) noexcept override;

private:
    double sampleRate_;
    std::vector<dsp::Svf> svf_;
    dsp::LinearRamp log2Cutoff_, q_, depth_;
    std::array<dsp::LinearRamp, 3> modeWeight_; // low, high, band
    int mode_ = 0;
    float lfoRateHz_ = 0.0f, lfoBeats_ = 0.0f;
    dsp::LfoShape shape_ = dsp::LfoShape::Sine;
    double freePhase_ = 0.0;
};

class DelayNode final : public EffectNode {
public:
    const char* typeName() const noexcept override { return "delay"; }
    static constexpr double kMaxSeconds = 8.0;
    DelayNode(int32_t id, double sampleRate, int numChannels, int blockSize);
    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;

protected:
    void process(ProcessContext& ctx, Bus& bus, int offset, int numFrames, const float* wet) noexcept override;

private:
    double targetSamples(const ProcessContext& ctx) const noexcept;
    double sampleRate_;
    std::vector<dsp::DelayLine> lines_;
    dsp::LinearRamp delay_;       // in samples
    dsp::LinearRamp feedback_, mix_;
    float delaySeconds_ = 0.25f, delayBeats_ = 0.0f;
    bool pingpong_ = false;
};

class ReverbNode final : public EffectNode {
public:
    const char* typeName() const noexcept override { return "reverb"; }
    ReverbNode(int32_t id, double sampleRate, int blockSize);
    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;

protected:
    void process(ProcessContext& ctx, Bus& bus, int offset, int numFrames, const float* wet) noexcept override;

private:
    dsp::Reverb reverb_;
    dsp::LinearRamp mix_;
    float room_ = 0.5f, damping_ = 0.5f;
};

class StutterNode final : public EffectNode {
public:
    const char* typeName() const noexcept override { return "stutter"; }
    static constexpr double kMaxSliceSeconds = 2.0;
    StutterNode(int32_t id, double sampleRate, int numChannels, int blockSize);
    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;

protected:
    void process(ProcessContext& ctx, Bus& bus, int offset, int numFrames, const float* wet) noexcept override;

private:
    enum class State { Live, Armed, Repeating };
    void capture(const ProcessContext& ctx, int numChannels) noexcept;
    double sampleRate_;
    int numChannels_;
    int ringSize_, ringMask_, ringWrite_ = 0;
    std::vector<float> ring_;    // numChannels * ringSize_
    std::vector<float> slice_;   // numChannels * (crossfade + maxSlice): pre-roll then the slice
    int sliceLength_ = 0, slicePos_ = 0, crossfade_;
    int maxSlice_;
    State state_ = State::Live;
    bool engage_ = false;
    float division_ = 16.0f;
    dsp::LinearRamp repeatMix_;  // 0 = live, 1 = repeating
};

class LimiterNode final : public EffectNode {
public:
    const char* typeName() const noexcept override { return "limiter"; }
    LimiterNode(int32_t id, double sampleRate, int numChannels, int blockSize);
    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;

protected:
    void process(ProcessContext& ctx, Bus& bus, int offset, int numFrames, const float* wet) noexcept override;

private:
    dsp::Limiter limiter_;
    std::vector<float> scratch_; // numChannels * blockSize
    int blockSize_;
    float ceilingDb_ = -0.3f;
};

class GainNode final : public EffectNode {
public:
    const char* typeName() const noexcept override { return "gain"; }
    GainNode(int32_t id, int blockSize);
    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp, const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;

protected:
    void process(ProcessContext& ctx, Bus& bus, int offset, int numFrames, const float* wet) noexcept override;

private:
    dsp::LinearRamp gain_;
    float gainDb_ = 0.0f;
};

} // namespace loopd
