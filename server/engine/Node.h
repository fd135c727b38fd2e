#pragma once
// The node tree's element. Nodes are built on the control thread (constructor, prepare, initial
// parameters), then handed to the audio thread, which links, renders, unlinks them and hands
// them back to be deleted on a non-real-time thread. Everything a node does after insertion runs
// on the audio thread and must not allocate, lock, log or throw.
#include <atomic>
#include <cstdint>

#include "dsp/Ramp.h"
#include "server/engine/Commands.h"
#include "server/engine/MemoryBudget.h"
#include "server/engine/Params.h"
#include "server/engine/TempoClock.h"

namespace loopd {

struct BufferData;
class CaptureRing;
class Group;
class Node;
struct NodeSetup;
struct StretchVoice;

constexpr int kMaxChannels = 32;

// Planar audio of one block: ch[c][0 .. blockSize).
struct Bus {
    float* ch[kMaxChannels] = {};
    int numChannels = 0;
};

// Looper synchronisation, shared by every looper during a block [audio].
struct LoopSync {
    int syncSource = 1;            // -3 internal (tempo clock bars), 0 none, n > 0: loop n (1-based)
    int32_t anchorId = -1;         // the node id of loop n (the anchor)
    double eighthPerCycle = 16.0;
    int64_t cycleFrames = 0;       // published by the anchor while it plays
    int64_t cycleOrigin = 0;       // absolute sample at which one of the anchor's cycles began
    int64_t cycleStamp = -1;       // block the anchor last published in (-1: no cycle)
    int64_t lenienceFrames = 4800; // a press this soon after a boundary snaps back to it
    int64_t roundTripFrames = 0;   // input + output latency of the driver (autoset_latency)
    bool paMute = false;           // mute the main outputs while any loop records
    int writers = 0;               // loops writing input during the current block
    template <class Ctx>
    bool cycleValid(const Ctx& ctx) const noexcept {
        return cycleStamp >= 0 && cycleStamp >= ctx.blockStartSample - 2 * ctx.blockSize;
    }
};

// The input's onsets the analysis found, newest last (the control thread adds them as they are
// reported, some tens of milliseconds late; loopers in onset quantize read them). Single writer.
struct OnsetFeed {
    static constexpr int kSize = 64;
    std::atomic<int64_t> at[kSize];
    std::atomic<uint32_t> count{0};
    OnsetFeed() { for (auto& a : at) a.store(-1, std::memory_order_relaxed); }
    // [control]
    void add(int64_t sample) noexcept {
        const uint32_t n = count.load(std::memory_order_relaxed);
        at[n % kSize].store(sample, std::memory_order_relaxed);
        count.store(n + 1, std::memory_order_release);
    }
    // [audio] The onset nearest `t` within [lo, hi] (-1: none known); `after` set when one later
    // than `t` is known (then none later can be nearer: they come in order).
    int64_t nearest(int64_t t, int64_t lo, int64_t hi, bool& after) const noexcept {
        after = false;
        const uint32_t n = count.load(std::memory_order_acquire);
        int64_t best = -1;
        for (uint32_t k = 0; k < n && k < static_cast<uint32_t>(kSize); ++k) {
            const int64_t s = at[(n - 1 - k) % kSize].load(std::memory_order_relaxed);
            if (s > t) after = true;
            if (s < lo || s > hi) continue;
            if (best < 0 || (s > t ? s - t : t - s) < (best > t ? best - t : t - best)) best = s;
        }
        return best;
    }
};

// What a node may see of the engine while it renders [audio].
struct ProcessContext {
    // The engine's constants.
    double sampleRate = 48000.0;
    int blockSize = 64;
    int numInputs = 0;
    int numOutputs = 2;
    int64_t declickSamples = 240;     // start/stop/pause fades
    int64_t smoothSamples = 480;      // parameter steps

    // This block: its time, the buffer table, the inputs, the cue bus, scratch space.
    int64_t blockStartSample = 0;     // absolute sample time of frame 0 of this block
    BufferData* const* buffers = nullptr;
    int numBuffers = 0;
    const float* const* inputs = nullptr; // numInputs planar blocks
    Bus* cueBus = nullptr;            // the cue/headphone pair, fed pre-fader (null: none)
    float* scratch = nullptr;         // blockSize floats any node may use during its render
    const BufferData* buffer(int32_t id) const noexcept {
        return buffers && id >= 0 && id < numBuffers ? buffers[id] : nullptr; // no table: the control thread
    }

    // The clock during this segment (a block is cut into segments at timed commands).
    double tempoBpm = 120.0;          // the clock's tempo during this segment
    double beats = 0.0;               // the clock's beat position at the segment's first frame
    int64_t segmentStart = 0;         // absolute sample of the segment's first frame
    int beatsPerBar = 4;              // the clock's meter
    uint32_t clockEpoch = 0;          // bumped when the beat position is reset (/reset): followers relock
    // The clock's beat position at absolute sample `at` of this segment (tempo is constant
    // within a segment: the clock integrates ramps block by block).
    double beatsAt(int64_t at) const noexcept {
        return beats + static_cast<double>(at - segmentStart) * tempoBpm / (60.0 * sampleRate);
    }
    // The clock at this segment's start and the tempo changes scheduled ahead of it.
    const TempoClock* clock = nullptr;
    const TempoForecast* forecast = nullptr;
    // Beats and tempo at a later sample `at` (>= segmentStart), counting the tempo changes
    // already scheduled before it (without a clock: this segment's tempo, held).
    double beatsAhead(int64_t at, double& bpm) const noexcept {
        if (!clock || !forecast) { bpm = tempoBpm; return beatsAt(at); }
        double b = 0.0;
        forecast->predict(*clock, segmentStart, at, b, bpm);
        return b;
    }

    // What nodes report during a segment; the engine acts on it after the segment.
    struct Report {
        // Nodes that finished (the engine unlinks them) and that started (pending → running).
        static constexpr int kMaxEnded = 512;
        Node* ended[kMaxEnded] = {};
        int numEnded = 0;
        Node* started[kMaxEnded] = {};
        int numStarted = 0;
        bool endedOverflow = false;       // more than kMaxEnded ended: the engine sweeps the tree
        bool bufferMissing = false;       // a player asked for a buffer that is not loaded
        int32_t missingBuffer = -1;       // which one
        uint64_t stretchUnderruns = 0;    // stretched output that was not ready in time
        // Buffers nodes are done with (loaded loop content, finished save_loop copies), handed
        // to the control thread by the lane after every segment.
        struct HandBack { BufferData* data; int32_t nodeId; bool saved; };
        static constexpr int kMaxHandBack = 16;
        HandBack handBack[kMaxHandBack] = {};
        int numHandBack = 0;
    } report;

    // What the players share.
    struct Players {
        bool stretchAhead = false;    // a stretch thread renders stretched players ahead (real time)
        double baseBpm = 120.0;       // --bpm: the material tempo of followers that set none
        bool followTempo = true;      // false: --disable-time-stretch
    } players;

    // What the loopers share.
    struct Loopers {
        const CaptureRing* capture = nullptr; // always-on input history
        const OnsetFeed* onsets = nullptr;    // the input's onsets (quantize 4)
        LoopSync sync;
    } loopers;

    bool filtersEnabled = true;       // eq3: false = --disable-filters (audio passes through)
};

enum class SetResult : uint8_t { Ok, NoSuchParam, BadValue, NotRampable };

class Node {
public:
    enum class Kind : uint8_t { Group, Player, Input, Effect, Looper };
    enum class State : uint8_t { Pending, Running, Pausing, Paused, Releasing, Ended };
    // Who may free a node. User audio lives in nodes owned by a namespace (the looper's group
    // and loops, the Crowdstream decks and stems): the generic tree commands (/n_free,
    // /g_freeAll, /g_deepFree, replace) leave them and what holds them alone (what sclang sends
    // on Cmd-period must not erase a loop); only their namespace frees them.
    enum class Owner : uint8_t { Tree, Looper, Decks };

    Node(int32_t id, Kind kind) noexcept : id_(id), kind_(kind) {}
    virtual ~Node() = default;
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;

    // [control before insertion | audio after] Set a parameter; rampSamples 0 = de-click default.
    // `ramp` true means an explicit /n_ramp of rampSamples.
    virtual SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                               const ProcessContext& ctx) noexcept;
    // [audio] Current (target) value of a parameter.
    virtual bool getParam(ParamId id, float& value) const noexcept;

    // [audio] Render frames [offset, offset+numFrames) of the block into `bus`.
    // Sources add into it, effects work in place.
    virtual void render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept = 0;

    // [audio] Called when the node is linked into the tree at absolute sample `now`.
    virtual void onInserted(ProcessContext& ctx, int64_t now) noexcept;
    // [audio] De-clicked stop beginning at absolute sample `at`: fade out, then the node ends.
    void release(const ProcessContext& ctx, int64_t at) noexcept;
    // [audio] De-clicked pause / resume (/n_run).
    void setRunning(bool run, const ProcessContext& ctx) noexcept;

    int32_t id() const noexcept { return id_; }
    Kind kind() const noexcept { return kind_; }
    const char* kindName() const noexcept { return kindName(kind_); }
    static const char* kindName(Kind kind) noexcept;
    // The /s_new type name ("player", "filter", ...).
    virtual const char* typeName() const noexcept { return kindName(); }
    State state() const noexcept { return state_; }
    bool isGroup() const noexcept { return kind_ == Kind::Group; }
    bool audible() const noexcept { return state_ != State::Paused && state_ != State::Ended; }

    // Tree links, owned by the audio thread after insertion.
    Group* parent = nullptr;
    Node* prev = nullptr;
    Node* next = nullptr;

    // [control before insertion, then read-only] See Owner.
    Owner owner = Owner::Tree;
    // [audio] Parameters that follow a control bus (/n_map): the engine sets them each block
    // the bus value changes.
    struct BusMap { ParamId param; int32_t bus; float last; };
    static constexpr int kMaxBusMaps = 8;
    BusMap busMaps[kMaxBusMaps] = {};
    int numBusMaps = 0;
    // [control] Its share of the memory budget (loop memory, stretch voice), returned when the
    // node is deleted on the control thread.
    MemoryLease memoryLease;

    // Solo state (see Engine::recomputeSolo).
    bool solo = false;
    bool soloMuted = false;
    bool onSoloPath = false;      // [audio] an ancestor of a soloed node (Engine::recomputeSolo)
    // dipstream links: start when `startWith` starts (+offset), stop when `stopWith` ends (+offset).
    int32_t startWith = -1;
    int32_t stopWith = -1;
    double linkOffsetSeconds = 0.0;
    int64_t startedAt = -1;       // absolute sample the node began sounding
    int64_t scheduledStart = -1;  // absolute sample a pending node starts at
    int64_t scheduledStop = -1;   // absolute sample a release begins at
    int64_t endedAt = -1;         // absolute sample the node fell silent (set when it ends)
    bool held = false;            // waits for an explicit start (/start_group)

    // [audio] The node stops sounding at absolute sample `at` without a fade (material ran out).
    void endNow(ProcessContext& ctx, int64_t at) noexcept;
    // [audio] Per-sample envelope: start/stop/pause fade times solo/mute fader.
    float nextEnvelope() noexcept { return env_.next() * soloGain_.next(); }
    bool envelopeStatic() const noexcept { return !env_.ramping() && !soloGain_.ramping(); }
    float envelopeValue() const noexcept { return env_.value() * soloGain_.value(); }
    void setSoloMuted(bool muted, const ProcessContext& ctx) noexcept;
    // [audio] Called by subclasses after rendering a segment: advances the state machine when a
    // fade finished. Returns true when the node just ended.
    bool finishSegment(ProcessContext& ctx) noexcept;
    // [audio] Pending nodes: start now (at absolute sample `at`).
    void begin(ProcessContext& ctx, int64_t at) noexcept;
    // [audio] A pending node whose scheduled start falls in frames [offset, offset + numFrames)
    // of this block begins there, and the range is cut to what follows; false: it does not start
    // in this range (nothing to render).
    bool beginWithin(ProcessContext& ctx, int& offset, int& numFrames) noexcept {
        if (scheduledStart < 0 || scheduledStart >= ctx.blockStartSample + offset + numFrames) return false;
        const int at = static_cast<int>(std::max<int64_t>(offset, scheduledStart - ctx.blockStartSample));
        begin(ctx, ctx.blockStartSample + at);
        numFrames -= at - offset;
        offset = at;
        return true;
    }
    // [audio] Whether the node could start sounding now (players: their buffer is loaded). A node
    // that is not ready when inserted waits (Pending) and starts when it becomes ready.
    virtual bool readyToStart(const ProcessContext&) const noexcept { return true; }
    // [audio] A node due to start at absolute sample `startSample` that must get ready ahead
    // (a stretched player fills its stretcher, so that its first frame sounds on that sample):
    // the engine calls preRoll block by block from kPreRollLead samples before the start.
    virtual bool wantsPreRoll() const noexcept { return false; }
    virtual void preRoll(ProcessContext&, int64_t /*startSample*/) noexcept {}
    static constexpr int64_t kPreRollLead = 9600; // samples before the start (0.2 s at 48 kHz)
    // [audio] Joining a running node in sync (a link with an offset in the past): advance by
    // `frames` output frames as if they had played.
    virtual void skipFrames(double /*frames*/, const ProcessContext&) noexcept {}
    // [audio] A command for this node type (cmd::Unit); false with `fail` filled when it failed.
    virtual bool unitCommand(cmd::Unit&, ProcessContext&, int64_t /*now*/, UnitFail& fail) noexcept {
        fail.code = FailCode::WrongNodeKind;
        return false;
    }
    // [control] After its creation parameters, before it is inserted: build what the audio
    // thread must not (a player's stretcher, charged to the budget, on the stretch worker).
    virtual void prepare(const NodeSetup&) {}
    // [control, after the audio thread handed it back] Its stretch voice, for the stretch worker
    // to forget before the node is deleted (null: none).
    virtual StretchVoice* stretchVoice() const noexcept { return nullptr; }
    // [audio] Pending for no other reason than readiness.
    bool waitingForBuffer() const noexcept {
        return state_ == State::Pending && startWith < 0 && scheduledStart < 0 && !held;
    }

protected:
    // [audio] Hook at the moment a node starts sounding.
    virtual void onBegin(ProcessContext&) noexcept {}
    // Ramp length for a parameter change: none before insertion (creation values are exact),
    // else the explicit /n_ramp time or the de-click smoothing.
    int64_t rampFor(bool explicitRamp, int64_t rampSamples, const ProcessContext& ctx) const noexcept {
        return !inserted_ ? 0 : explicitRamp ? rampSamples : ctx.smoothSamples;
    }
    // A fader parameter: ramp `r` to `value` when it lies in [lo, hi], else BadValue.
    static SetResult rampWithin(dsp::LinearRamp& r, float value, float lo, float hi, int64_t ramp, bool explicitRamp) noexcept {
        if (!(value >= lo && value <= hi)) return SetResult::BadValue;
        r.setTarget(value, ramp, explicitRamp);
        return SetResult::Ok;
    }
    bool inserted_ = false;
    State state_ = State::Running;
    dsp::LinearRamp env_;
    dsp::LinearRamp soloGain_;
    int64_t fadeSamples_ = -1; // -1: ctx.declickSamples

private:
    int64_t fade(const ProcessContext& ctx) const noexcept { return fadeSamples_ >= 0 ? fadeSamples_ : ctx.declickSamples; }
    int32_t id_;
    Kind kind_;
};

} // namespace loopd
