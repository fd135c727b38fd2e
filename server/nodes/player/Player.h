#pragma once
// `player`: plays a buffer, once or looped, at a varispeed rate (4-point Hermite interpolation;
// rate 1 at an integer position is an exact copy), with gain, pan, mute, output channel, start
// offset and de-clicked start/stop (`fade` seconds, default the engine's de-click time). A
// one-shot player ends by itself: its fade-out is timed to finish on the buffer's last frame.
// With `stretch` other than rate, a time-stretch engine keeps the pitch (followers lock to the
// clock's beats); an overloaded stretch thread may shed it to varispeed for a while.
//
// Files: Player.cpp (parameters, preparation, lifecycle), PlayerVarispeed.cpp (the reader and
// its beat lock), PlayerStretched.cpp (the stretched playback, cover, shedding); OutputLedger.h.
#include <algorithm>
#include <cmath>
#include <limits>

#include "dsp/Pan.h"
#include "dsp/Varispeed.h"
#include "dsp/Ramp.h"
#include "server/engine/StretchWorker.h"
#include "server/nodes/player/OutputLedger.h"
#include "stretch/Stretcher.h"

#include <memory>
#include <vector>
#include "server/engine/BufferData.h"
#include "server/engine/Node.h"

namespace loopd {

class Player final : public Node {
public:
    explicit Player(int32_t id) noexcept;

    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                       const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;
    void render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept override;
    bool readyToStart(const ProcessContext& ctx) const noexcept override;

    // [audio] Advance the read position by `frames` output frames (joining a running node in sync).
    void skipFrames(double frames, const ProcessContext& ctx) noexcept override;
    // [control] Before insertion: build the stretcher chosen by `stretch` (allocates), charge it
    // to the memory budget (throws its error when it does not fit) and register it with the
    // stretch worker.
    void prepare(const NodeSetup& setup) override;
    StretchVoice* stretchVoice() const noexcept override { return voice_.get(); }
    stretch::Method stretchMethod() const noexcept { return method_; }
    // [audio] A stretched player due to start at absolute sample `startSample` (a timetagged
    // /s_new, a /start_group time, a link): fill its stretcher ahead (real time), so that its first
    // frame sounds on that sample rather than a pre-roll later. Called block by block until then.
    void preRoll(ProcessContext& ctx, int64_t startSample) noexcept override;
    bool wantsPreRoll() const noexcept override { return voice_ != nullptr; }
    double position() const noexcept { return static_cast<double>(idx_) + frac_; }

protected:
    void onBegin(ProcessContext& ctx) noexcept override;

private:
    // Read-rate multiplier of a tempo follower at clock tempo `bpm`: bpm / material BPM (1 when
    // not following); without `bpm`, the clock's tempo now.
    double tempoFactor(const ProcessContext& ctx, double bpm) const noexcept {
        if (!follow_ || !ctx.players.followTempo) return 1.0;
        return bpm / materialBpm(ctx);
    }
    double tempoFactor(const ProcessContext& ctx) const noexcept { return tempoFactor(ctx, ctx.tempoBpm); }
    // Material frames per output frame of a stretched player at clock tempo `bpm` (the stretchers'
    // supported range).
    double stretchSpeed(const ProcessContext& ctx, double bpm) const noexcept {
        return std::clamp(static_cast<double>(rate_.value()) * tempoFactor(ctx, bpm), 0.25, 4.0);
    }
    double materialBpm(const ProcessContext& ctx) const noexcept {
        if (materialBpm_ > 0.0) return materialBpm_;
        if (materialBpm_ < 0.0) // bpm -1: the buffer's analysed tempo (the server's --bpm until it has one)
            if (const BufferData* b = ctx.buffer(buf_))
                if (const float a = b->analysedBpm.load(std::memory_order_relaxed); a > 0.0f) return a;
        return ctx.players.baseBpm;
    }
    // align 1 (a follower): the start position put so that the material's downbeat (`downbeat`,
    // or the buffer's analysed one) lands on the clock's next bar line after `startSample`.
    void alignStart(const ProcessContext& ctx, int64_t startSample) noexcept;
    // Beat-grid lock of a follower: the tempo factor for frames [from, to) corrected so that the
    // read position lands where the clock's beats say it should (varispeed: exactly per range).
    double lockedTempoFactor(ProcessContext& ctx, int from, int to, double frames) noexcept;
    // Where the beat grid puts the source position at clock position `beats` (relative to the
    // anchor), and at absolute sample `at` of this segment.
    double idealSourceAtBeats(const ProcessContext& ctx, double beats) const noexcept {
        return (beats - lockBeats_) * 60.0 / materialBpm(ctx) * ctx.sampleRate * lockRate_;
    }
    double idealSource(const ProcessContext& ctx, int64_t at) const noexcept { return idealSourceAtBeats(ctx, ctx.beatsAt(at)); }
    void renderRange(ProcessContext& ctx, Bus& bus, int from, int to) noexcept;
    void renderRangeTo(ProcessContext& ctx, Bus& bus, int from, int to) noexcept;
    // One output frame through the general reader (edges, wrap, end); false when the node ended.
    bool step(ProcessContext& ctx, Bus& bus, const float* const* src, int srcCh, int64_t F, int i, double r,
              float g, dsp::StereoGains pg) noexcept;
    // n frames whose taps are all inside the buffer, constant gain and rate.
    void interpolateRun(Bus& bus, const float* const* src, int srcCh, int i, int n, double r, float g,
                        dsp::StereoGains pg) noexcept;
    int64_t fadeLength(const ProcessContext& ctx) const noexcept;

    int32_t buf_ = -1;
    bool loop_ = false;
    int out_ = 0;
    // Read position = idx_ + frac_ (0 <= frac_ < 1), advanced the same way on every path so that
    // the output does not depend on how frames are split into blocks (time invariance): as a
    // number of steps at one rate after an anchor (dsp/Varispeed.h), not by adding the rate
    // frame after frame, so that a run of frames can be read in SIMD lanes.
    int64_t idx_ = 0;
    double frac_ = 0.0;
    double aFrac_ = 0.0;                                       // frac_ at the anchor
    double aRate_ = std::numeric_limits<double>::quiet_NaN();  // NaN: no anchor (position set)
    double aRateFrac_ = 0.0;
    int64_t aRateWhole_ = 0;
    int64_t aSteps_ = 0; // steps since the anchor
    int64_t aWhole_ = 0; // varispeedWhole(t) at aSteps_
    void setPosition(double p) noexcept {
        const double f = std::floor(p);
        idx_ = static_cast<int64_t>(f);
        frac_ = p - f;
        aRate_ = std::numeric_limits<double>::quiet_NaN();
    }
    // An anchor at the current position for rate r (a new rate, a position set, or the steps
    // since the anchor at their limit: all at points that do not depend on block sizes).
    void anchorFor(double r) noexcept {
        if (r == aRate_ && aSteps_ < dsp::kVarispeedRebaseSteps) return;
        const double whole = std::floor(r);
        aFrac_ = frac_;
        aRate_ = r;
        aRateWhole_ = static_cast<int64_t>(whole);
        aRateFrac_ = r - whole;
        aSteps_ = 0;
        aWhole_ = 0;
    }
    void stepAnchored(int64_t n) noexcept {
        aSteps_ += n;
        const double t = dsp::varispeedT(aFrac_, aSteps_, aRateFrac_);
        const int64_t w = dsp::varispeedWhole(t);
        idx_ += n * aRateWhole_ + (w - aWhole_);
        aWhole_ = w;
        frac_ = t - static_cast<double>(w);
    }
    void advance(double r) noexcept {
        anchorFor(r);
        stepAnchored(1);
    }
    dsp::LinearRamp gain_;
    dsp::LinearRamp pan_;
    dsp::LinearRamp rate_;
    dsp::LinearRamp mute_;
    bool muted_ = false;
    bool follow_ = false;
    double materialBpm_ = 0.0;   // 0: the server's --bpm; -1: the buffer's analysed tempo
    bool align_ = false;         // the material's downbeat on the clock's bars (followers)
    int64_t downbeat_ = -1;      // the material's downbeat frame for align (-1: the analysed one)
    float startFrac_ = -1.0f;    // >= 0: start at this fraction of the buffer
    uint32_t outMask_ = 0;       // mono sources: bit c set = output channel c (0: use out/pan)

    // Time-stretch (a method other than varispeed): the player reads the buffer at speed 1 and
    // the stretcher turns it into `speed` times fewer/more output frames at the same pitch.
    void renderStretched(ProcessContext& ctx, Bus& bus, int from, int to) noexcept;
    // A new playback of the voice from the start position (or, fromStart false, from the read
    // position), at `speed` (primes the stretcher).
    // alignAt >= 0: a start at that sample (align 1 places the position for it).
    void primeVoice(ProcessContext& ctx, double speed, bool fromStart = true, int64_t alignAt = -1) noexcept;
    // Load shedding (ShedPolicy): the worker asked this player to do without its stretcher
    // (varispeed from where the output stands), or let it have it back (re-primed where the
    // varispeed stands, which plays on until the stretched output has caught up with it).
    void followShedRequest(ProcessContext& ctx, const BufferData& b, double speed, int64_t at) noexcept;
    bool rejoin(ProcessContext& ctx, int64_t at, double speed, int n) noexcept;
    // Source frames into the voice's input ring (read here, where buffers are safe to read).
    void pushSource(const BufferData& b, int frames) noexcept;
    // Real time: keep about aheadTarget_ (+ n) output frames in flight for the worker.
    void fillAhead(const BufferData& b, double speed, int n) noexcept;
    void takeSegments() noexcept;
    // Real time: the fill target after a block that found `ready` output frames (see there).
    void adaptAhead(const ProcessContext& ctx, double ready, bool underrun, int n) noexcept;
    // Real time, a follower whose output starts after its grid began (an immediate start waits
    // for the stretcher's first output): drop the output the grid has already passed. True when
    // the output stands on the grid.
    bool catchUp(ProcessContext& ctx, int64_t at, double speed, int n) noexcept;
    // Both of those: read and drop the stretched output the playback has passed, while the next
    // output frame lags `target` (lag = target - (ledger source - offset), source frames) and
    // output is there; the lag left. `dropped`: something was.
    double dropPassedOutput(double target, double offset, double speed, int n, bool& dropped) noexcept;
    stretch::Method method_ = stretch::Method::Rate;
    float pitchSemitones_ = 0.0f;
    std::unique_ptr<StretchVoice> voice_;
    static constexpr int kMaxPush = 4096;   // source frames put into the input ring at a time
    std::vector<float> outBuf_;             // 2 x blockSize: the block's stretched output, planar
    bool outputStarted_ = false;     // stretched frames have come out (before: the pre-roll)
    bool preRolled_ = false;         // primed and filled ahead of a scheduled start
    double preRollSpeed_ = 1.0;
    int64_t fadeInLeft_ = 0;         // a fade-in after catching up (the first frame is mid-material)
    // Output frames to keep in flight (real time): 2048 (43 ms at 48 kHz), doubled at an underrun
    // up to 8192, relaxed by a quarter after 10 s without one, back to 2048 at the least (it
    // relaxed to 1024 before: 21 ms is little slack on a shared machine). More in flight adds no
    // latency, but the lock leans further on the engine's model (WSOLA's step error 6.5 -> 8.9 ms
    // at 4096 on the real-time test).
    double aheadTarget_ = 2048.0;
    int64_t cleanFrames_ = 0;        // frames since the target last rose
    int64_t sinceUrgent_ = 0;        // frames since the last urgent raise
    bool sourceDone_ = false;        // a one-shot fed its last real frame
    int64_t realPushed_ = 0;         // real source frames put into the voice since the start
    uint32_t primeGen_ = 0;          // the voice's prime generation this playback belongs to
    int blockSize_ = 0;
    // Beat-grid lock (followers).
    bool relock_ = true;         // take a new anchor (start, rate change, seek, clock reset)
    uint32_t lockEpoch_ = 0;     // the clock epoch the anchor belongs to
    double lockBeats_ = 0.0;     // clock beats at the anchor
    double lockPos_ = 0.0;       // source position at the anchor (varispeed)
    double lockRate_ = 1.0;      // the `rate` the anchor was taken with
    // Stretched: where the output stands in the source (what was fed at which speed).
    OutputLedger ledger_;
    double lockOutSrc_ = 0.0;    // the ledger's source at the lock anchor
    int64_t startIdx_ = 0;       // buffer index playback began at
    // Underrun cover (varispeed) and the splices where it meets the stretched output.
    static constexpr int kSpliceFrames = 64;
    bool coverRunning_ = false;
    double coverPos_ = 0.0;
    float lastOut_[2] = {0.0f, 0.0f};
    float prevOut_[2] = {0.0f, 0.0f};
    float spliceOffset_[2] = {0.0f, 0.0f};
    int spliceLeft_ = 0;
    bool shed_ = false;          // playing at varispeed: the worker shed this voice
    bool rejoin_ = false;        // varispeed until the stretched output catches up (after a
                                 // shed, or a late start)
    int64_t rejoinAt_ = 0;       // sample the voice was re-primed at (a late start: the cover began)
    // No first stretched output this long after the start (a busy stretch thread): the varispeed
    // starts the player instead of silence and the stretched output rejoins it (lateStart_: this
    // rejoin's covered blocks are underruns).
    static constexpr double kLateStartSeconds = 0.1;
    bool lateStart_ = false;
};

} // namespace loopd
