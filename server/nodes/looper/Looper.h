#pragma once
// `looper`: one loop of a live looper, driven by SooperLooper's commands (record, overdub,
// multiply, insert, replace, substitute, reverse, mute, undo/redo, trigger, oneshot, pause) and
// loopd's own (capture the last cycles from the always-on input ring, swap content at a bar).
//
// Two heads. The play head renders the loop at engine time t. The write head lags it by the
// round-trip latency D (input + output latency): the input that arrives at time t + D is what the
// player played while hearing the loop at time t, so it is written where the play head was at t.
// The play side records, per sample, its position and what it was doing (a short history), and
// the write head replays that history against the capture ring. The same history lets a press
// that comes shortly after a quantize boundary take effect retroactively at the boundary
// ("lenience"): the write head rewinds and writes what it would have written.
//
// Loop audio lives in LoopMemory pages: every edit is one undo generation, undo/redo swap pages.
// Every discontinuity the listener could hear (start of playback, undo, redo, reverse, trigger,
// content swap) is crossfaded over `fade_samples` from a snapshot of what the old state would
// have played; a recording's end is crossfaded with the input that preceded its start, so the
// loop's wrap is seamless.
//
// Files: Looper.cpp (names, construction, controls, status, unit commands), LooperCommands.cpp
// (the state machine), LooperHeads.cpp (play and write heads, pitch shifter), LooperJobs.cpp
// (copies, loads, saves, hand-back).
//
// Threads: constructor and prepare [control] (allocate); everything else [audio], never
// allocating. Status is published through atomics for the control thread.
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "dsp/Ramp.h"
#include "server/nodes/looper/LoopMemory.h"
#include "server/engine/StretchWorker.h"
#include "server/engine/Node.h"

namespace loopd {

struct BufferData;
class CaptureRing;

// SooperLooper's state numbers (its OSC documentation).
enum class LoopState : int8_t {
    Unknown = -1, Off = 0, WaitStart = 1, Recording = 2, WaitStop = 3, Playing = 4, Overdubbing = 5,
    Multiplying = 6, Inserting = 7, Replacing = 8, Delay = 9, Muted = 10, Scratching = 11,
    OneShot = 12, Substitute = 13, Paused = 14,
};

// Commands (`/sl/#/hit <name>`).
enum class LoopCmd : uint8_t {
    Record, Overdub, Multiply, Insert, Replace, Substitute, Reverse, Mute, MuteOn, MuteOff,
    Undo, Redo, UndoAll, RedoAll, Trigger, OneShot, Pause, PauseOn, PauseOff, Capture,
    CaptureSeconds, Clear, Count
};

// Per-loop controls (`/sl/#/set <name> <value>`).
enum class LoopCtl : uint8_t {
    RecThresh, Feedback, Dry, Wet, InputGain, Rate, Quantize, Sync, PlaybackSync, RelativeSync,
    Round, MuteQuantized, OverdubQuantized, FadeSamples, InputLatency, OutputLatency,
    AutosetLatency, Pan1, Pan2, In, PitchShift, StretchRatio, TempoStretch, Count
};

// [any] Names as SooperLooper spells them; null/false when unknown.
const char* loopCmdName(LoopCmd c) noexcept;
bool loopCmdFromName(const char* name, LoopCmd& out) noexcept;
const char* loopCtlName(LoopCtl c) noexcept;
bool loopCtlFromName(const char* name, LoopCtl& out) noexcept;

// What the looper publishes for /sl/#/get (written by the audio thread once per block).
struct LooperStatus {
    std::atomic<int> state{0}, nextState{-1};
    std::atomic<double> loopLenSeconds{0}, loopPosSeconds{0}, cycleLenSeconds{0};
    std::atomic<double> freeSeconds{0}, totalSeconds{0};
    std::atomic<float> inPeak{0}, outPeak{0}, rateOutput{1};
    std::atomic<int> undoDepth{0}, redoDepth{0};
    std::atomic<int64_t> loopFrames{0}, cycleFrames{0};
    std::atomic<uint64_t> memoryFull{0};      // times a write ran out of loop memory
    std::atomic<uint64_t> commandsIgnored{0}; // commands that made no sense in the current state
    // Cycle starts: how many times the play head came back to the loop's start (or new content
    // started playing), and the engine sample of the last one (the jam counts its cycles here).
    std::atomic<int64_t> wraps{0}, wrapSample{-1};
    // Buffers mixed in (mixFor): how many, and the wrap count at the last one.
    std::atomic<int64_t> mixes{0}, mixWrap{-1};
};

class Looper final : public Node {
public:
    // [control] channels 1 or 2; loopSeconds: the longest loop; undoSeconds: extra pages kept for
    // undo history (at least one loop's worth is sensible).
    Looper(int32_t id, int channels, double sampleRate, double loopSeconds, double undoSeconds);
    ~Looper() override;
    // [any] The memory such a looper allocates (its page pool dominates), for the memory budget.
    static int64_t memoryBytes(int channels, double sampleRate, double loopSeconds, double undoSeconds) noexcept;

    const char* typeName() const noexcept override { return "looper"; }
    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                       const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;
    void render(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept override;
    // [control] Tests: false renders every block sample by sample, as if never idle.
    static void setIdleShortcut(bool on) noexcept { idleShortcut_.store(on, std::memory_order_relaxed); }
    // [any] Frames every looper in the process rendered idle (a diagnostic for tests).
    static uint64_t idleFrames() noexcept { return idleFrames_.load(std::memory_order_relaxed); }

    // The looper's unit commands (cmd::Unit, built by the helpers below on the control thread):
    // a button, a control, new content, a save, a pitch shifter.
    enum class Op : uint8_t { Command, Control, Load, Save, Shifter, Mix, Take };
    // When loaded content starts: now, at the next boundary of the loop's quantize grid, at the
    // clock's next bar or beat, at the loop's next wrap (its current cycle plays to its end).
    enum class LoadAt : uint8_t { Now = 0, Boundary = 1, Bar = 2, Wrap = 3, Beat = 4 };
    static cmd::Unit commandFor(int32_t node, LoopCmd c, float arg) noexcept {
        return cmd::Unit{node, static_cast<uint8_t>(Kind::Looper), static_cast<uint8_t>(Op::Command), static_cast<float>(c), arg};
    }
    static cmd::Unit controlFor(int32_t node, LoopCtl c, float value) noexcept {
        return cmd::Unit{node, static_cast<uint8_t>(Kind::Looper), static_cast<uint8_t>(Op::Control), static_cast<float>(c), value};
    }
    // New loop content (a file the worker loaded): swap now, at the next boundary of the loop's
    // grid, at the clock's next bar or at the loop's next wrap.
    static cmd::Unit loadAtFor(int32_t node, BufferData* data, LoadAt at) noexcept {
        return cmd::Unit{node, static_cast<uint8_t>(Kind::Looper), static_cast<uint8_t>(Op::Load), static_cast<float>(at), 0.0f, data};
    }
    // Add `data` into the loop from its start, at the loop's next wrap: one undo generation (the
    // jam's takes). The looper hands `data` back when it is mixed in.
    static cmd::Unit mixFor(int32_t node, BufferData* data) noexcept {
        return cmd::Unit{node, static_cast<uint8_t>(Kind::Looper), static_cast<uint8_t>(Op::Mix), 0.0f, 0.0f, data};
    }
    // Copy one cycle of the live input into `data` (sized to the loop's length by the control
    // thread): the cycle in progress (cyclesBack 0) or the one before, from the capture ring, as
    // the write head would have recorded it (latency compensated). Handed back as a save once the
    // input has arrived (the jam's takes).
    static cmd::Unit takeFor(int32_t node, BufferData* data, int cyclesBack) noexcept {
        return cmd::Unit{node, static_cast<uint8_t>(Kind::Looper), static_cast<uint8_t>(Op::Take), static_cast<float>(cyclesBack), 0.0f, data, nullptr, true};
    }
    // Copy the loop into `data` (sized by the control thread) for /sl/#/save_loop.
    static cmd::Unit saveFor(int32_t node, BufferData* data) noexcept {
        return cmd::Unit{node, static_cast<uint8_t>(Kind::Looper), static_cast<uint8_t>(Op::Save), 0.0f, 0.0f, data, nullptr, true};
    }
    // A pitch shifter (built by the control thread, registered with the stretch worker).
    static cmd::Unit shifterFor(int32_t node, StretchVoice* voice) noexcept {
        return cmd::Unit{node, static_cast<uint8_t>(Kind::Looper), static_cast<uint8_t>(Op::Shifter), 0.0f, 0.0f, nullptr, voice};
    }
    // [audio] One of the above.
    bool unitCommand(cmd::Unit& m, ProcessContext& ctx, int64_t now, UnitFail& fail) noexcept override;

    // [audio] A command pressed at absolute sample `at` (within the current segment).
    void command(LoopCmd c, float arg, ProcessContext& ctx, int64_t at) noexcept;
    // [audio] A control change.
    bool setControl(LoopCtl c, float value, const ProcessContext& ctx) noexcept;
    // [audio] New content (from a file): swap at the next bar/cycle boundary when `quantized`,
    // else now. Returns the buffer the looper is done with (the previous pending one), or null;
    // the looper keeps `data` until copied, then hands it back through takeFinishedBuffer().
    BufferData* loadContent(BufferData* data, LoadAt when, ProcessContext& ctx, int64_t at) noexcept;
    // [audio] Whether the loop is writing input now (PA mute).
    bool writing() const noexcept;

    int channels() const noexcept { return channels_; }
    // [any] Published once per render.
    LooperStatus& status() noexcept { return status_; }
    // Tests only, with the engine stopped.
    const LoopMemory& memory() const noexcept { return mem_; }

    // [audio] Start copying the loop into `dst` (sized by the control thread); the looper hands
    // it back (ProcessContext::handBack, saved = true) when done. False when two saves are running.
    bool startSave(BufferData* dst) noexcept;
    // [audio] Hand back buffers the looper is done with (called by render; public for tests).
    void handBack(ProcessContext& ctx) noexcept;

    // Pitch shift and tempo stretch (SooperLooper's pitch_shift, stretch_ratio, tempo_stretch):
    // the loop plays at rate / ratio (slower for a ratio above 1; with tempo_stretch the ratio
    // follows the clock: the loop's own tempo over the clock's), and its output goes through a
    // pitch shifter that undoes the varispeed's pitch change and adds pitch_shift semitones. The
    // shifter (a Rubber Band voice, stepped by the stretch worker in real time) is fed the loop
    // content ahead of the play head by its latency plus a margin, so that what comes out lines
    // up with the play head: the shift adds no delay. Where it has nothing ready (it was just
    // switched on, or the worker fell behind), the plain loop plays.
    // [audio] Takes the shifter; returns the one it had (null), for the control thread to free.
    StretchVoice* attachShifter(StretchVoice* v) noexcept;
    // [control, after the node was handed back] The shifter, for the stretch worker to forget.
    StretchVoice* stretchVoice() const noexcept override { return shifter_.get(); }
    // [control] Whether a control value needs the shifter.
    static bool needsShifter(LoopCtl c, float value) noexcept;

private:
    enum class WriteMode : uint8_t { None, Record, Overdub, Replace, Multiply, Insert };
    // A command waiting for its sample: `at`; in onset quantize (`press` >= 0) the press waits
    // until the onsets around it are known (one after it, or `at` at the latest) and then goes to
    // the nearest within the lenience, back in time (history).
    struct Pending { bool active = false; LoopCmd cmd = LoopCmd::Count; float arg = 0; int64_t at = 0; int64_t press = -1; };
    void decideOnsetPress(ProcessContext& ctx, int64_t t) noexcept;
    static constexpr double kOnsetLatencySeconds = 0.06; // how late the analysis reports an onset, at most
    struct CopyJob {
        bool active = false;
        bool fromRing = false;  // capture: from the input ring
        bool shift = false;     // insert: move the old tail behind the inserted audio
        const BufferData* buffer = nullptr; // load: from a file's buffer
        int64_t srcStart = 0;   // ring: absolute input time of loop frame 0
        int64_t frames = 0, done = 0;
        int64_t startTau = 0;   // wait until the write head has passed this time
        bool fadeTail = false;  // crossfade the end with the input before srcStart when done
        bool add = false;       // mix: add the buffer to what the loop holds
    };
    struct TakeJob { BufferData* dst = nullptr; int64_t srcStart = 0, frames = 0, done = 0; };
    struct SaveJob { BufferData* dst = nullptr; int64_t frames = 0, done = 0; bool started = false; };
    struct HandBackSlot { BufferData* data = nullptr; bool saved = false; };

    int64_t len() const noexcept { return playLen_; }
    // Play side.
    void execute(LoopCmd c, float arg, ProcessContext& ctx, int64_t at, bool retro) noexcept;
    int64_t boundaryFor(LoopCmd c, const ProcessContext& ctx, int64_t at, bool& retro) const noexcept;
    bool grid(const ProcessContext& ctx, int quantize, int64_t& origin, double& unit) const noexcept;
    void startRecord(ProcessContext& ctx, int64_t at) noexcept;
    void stopRecord(ProcessContext& ctx, int64_t at, bool retro) noexcept;
    void finishRecord(ProcessContext& ctx, int64_t stopTime, int64_t length, int64_t cycle) noexcept;
    void finishMultiply(ProcessContext& ctx, int64_t at) noexcept;
    void finishInsert(ProcessContext& ctx, int64_t at) noexcept;
    void capture(ProcessContext& ctx, int64_t at, double amount, bool seconds) noexcept;
    void stopWriteMode(ProcessContext& ctx, int64_t at) noexcept;
    void cancelWrites(int64_t now) noexcept;
    void beginXfade(const ProcessContext& ctx) noexcept;
    void setMode(WriteMode m, ProcessContext& ctx, int64_t from) noexcept;
    void swapInPendingLoad(ProcessContext& ctx) noexcept;
    void syncLengthFromMemory() noexcept;
    float readLoop(int64_t frame, int c) const noexcept;
    float readOld(int64_t frame, int c) const noexcept;
    int64_t writePosition(int64_t t) const noexcept;
    int inputChannel(int c, const ProcessContext& ctx) const noexcept;
    int ringChannel(int c) const noexcept;
    LoopState currentState() const noexcept;
    void publish(ProcessContext& ctx) noexcept;

    // An empty looper doing nothing (the one --loops 1 makes at start-up, on an idle server):
    // no loop, no write, no event due, no fade running. Its block is the input at the dry level
    // and the history of a still write head (renderIdle: the per-sample loop's result at once).
    bool idleThrough(int numFrames) const noexcept;
    void renderIdle(ProcessContext& ctx, Bus& bus, int offset, int numFrames) noexcept;
    static inline std::atomic<bool> idleShortcut_{true};
    static inline std::atomic<uint64_t> idleFrames_{0};

    // Write side.
    void runWriteHead(ProcessContext& ctx, int64_t until) noexcept;
    void handleWriteEvents(const ProcessContext& ctx, int64_t tau) noexcept;
    void writeFrame(ProcessContext& ctx, WriteMode m, int64_t pos, int64_t inputTime, float w) noexcept;
    void startFadeOut(WriteMode m, int64_t length, int fade) noexcept;
    void crossfadeTail(int64_t srcStart, int64_t length) noexcept; // with the ring of this render
    void runCopyJob(ProcessContext& ctx) noexcept;
    bool copyStep(int64_t budget) noexcept;
    void completeCopy() noexcept;
    void finishCopy() noexcept;
    void queueHandBack(BufferData* b, bool saved) noexcept;
    int64_t latency(const ProcessContext& ctx) const noexcept;

    int channels_;
    double sampleRate_;
    LoopMemory mem_;
    LooperStatus status_;

    // Play state.
    WriteMode mode_ = WriteMode::None;    // what the play side is doing now
    int64_t playLen_ = 0;                 // the loop's length as the play head sees it
    double pos_ = 0.0;                    // play position in frames
    int dir_ = 1;
    bool muted_ = false, paused_ = false, oneShot_ = false, substitute_ = false;
    bool loadMuted_ = false, loadPaused_ = false; // muted / paused while a load waited in an empty loop
    int64_t recordStart_ = 0;             // absolute time of loop frame 0 of a recording
    int64_t cycleFrames_ = 0;             // the loop's cycle
    int64_t multiplyBase_ = 0;            // loop length when multiply/insert began
    int64_t insertAt_ = 0, insertStart_ = 0, shiftInserted_ = 0;
    int64_t stopAt_ = -1;                 // a recording/multiply/insert stops here (absolute)
    Pending pending_;
    bool waitThreshold_ = false;          // record waits for rec_thresh
    bool memoryFull_ = false;
    dsp::LinearRamp outGain_;             // mute fades
    dsp::LinearRamp wet_, dry_, inGain_;

    // Controls.
    float recThresh_ = 0.0f, feedback_ = 1.0f, rate_ = 1.0f;
    float pitchShift_ = 0.0f, stretchRatio_ = 1.0f;
    bool tempoStretch_ = false;
    double speed_ = 1.0;                  // the play head's step: rate / stretch ratio
    double pitchScale_ = 1.0;             // what the shifter applies (1: not shifting)
    void updateSpeed(const ProcessContext& ctx) noexcept;
    int quantize_ = 1;                    // 0 off, 1 cycle, 2 8th, 3 loop, 4 onset (record presses)
    bool sync_ = true, playbackSync_ = false, relativeSync_ = false, round_ = true;
    bool muteQuantized_ = false, overdubQuantized_ = false;
    int fadeSamples_ = 256;
    int64_t inputLatency_ = 0, outputLatency_ = 0;
    bool autosetLatency_ = true;
    float pan_[2] = {0.5f, 0.5f};
    int in_ = 0;

    // Crossfade from a snapshot of the old output.
    static constexpr int kMaxFade = 4096;
    std::vector<float> xfade_, scratchFade_; // kMaxFade * channels
    int xfadeLen_ = 0, xfadePos_ = 0;

    // History for the write head: per absolute time (mod kHistory), the write position and mode.
    static constexpr int64_t kHistory = 1 << 15;
    std::vector<int64_t> histPos_;
    std::vector<uint8_t> histMode_;
    int64_t histEnd_ = 0;                 // one past the newest time recorded
    int64_t writeCursor_ = 0;             // next time the write head processes
    WriteMode writeMode_ = WriteMode::None;
    int64_t writeRun_ = 0;                // frames since the write mode began (fade in)
    int64_t fadeOutLeft_ = 0;             // frames of input fade-out after an overdub/replace ended
    WriteMode fadeOutMode_ = WriteMode::None;
    int64_t fadeOutPos_ = 0;              // the fade-out continues the old trajectory
    int fadeOutDir_ = 1;
    int64_t lastWritePos_ = -1;           // overdub/replace: the last frame written, its direction
    int lastWriteDir_ = 1;
    bool recordEndPending_ = false;       // the write head sets the length and crossfades the tail
    int64_t recordEndTau_ = 0, recordLength_ = 0;
    bool lengthChangePending_ = false;    // multiply/insert: the write head sets the new length
    int64_t lengthChangeTau_ = 0, lengthChange_ = 0;

    const CaptureRing* ctxRing_ = nullptr;
    CopyJob copy_;
    SaveJob saves_[2];
    HandBackSlot handBack_[6];
    BufferData* leaked_ = nullptr;
    BufferData* pendingLoad_ = nullptr;
    int64_t pendingLoadAt_ = -1;
    bool loadAtWrap_ = false;             // pendingLoad_ waits for the next wrap
    BufferData* pendingMix_ = nullptr;    // added at the next wrap
    TakeJob take_;
    int64_t lastWrap_ = -1;               // engine sample where the current cycle started
    void onWrap(ProcessContext& ctx, int64_t at) noexcept;
    void startMix(ProcessContext& ctx) noexcept;
    void runTake() noexcept;

    float inPeak_ = 0, outPeak_ = 0;

    // The pitch shifter (see attachShifter).
    std::unique_ptr<StretchVoice> shifter_;
    bool shifting_ = false;               // feeding it and playing what it gives
    double aheadPos_ = 0.0;               // loop position of the next frame fed (ahead of pos_)
    int64_t aheadFrames_ = 0;             // how far ahead the feed runs
    std::vector<float> shiftIn_, shiftOut_; // interleaved scratch, one block
    int shiftMix_ = 0;                    // 0 .. kShiftFade: how far the output has crossfaded to shifted
    int64_t directLeft_ = 0;              // frames the plain loop plays before the shifted may
    int64_t shiftReadDelay_ = 0;          // frames before its output starts (its start: aheadFrames_)
    int64_t shiftOwed_ = 0;               // output frames it did not have in time: dropped when they come
    static constexpr int kShiftFade = 256;
    static constexpr int kShiftMargin = 2048; // frames the feed runs ahead beyond the shifter's latency
    static constexpr int kShiftBlock = 4096;  // the most frames rendered at once
    void startShifting(ProcessContext& ctx) noexcept;
    // Reads the loop at a fractional position (linear interpolation), into v[channels].
    void readAt(double p, float* v) const noexcept;
};

} // namespace loopd
