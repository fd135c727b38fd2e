#pragma once
// The real-time engine: node tree, buffer table, sample-accurate scheduler, master limiter and
// recorder taps. It knows nothing of devices or sockets: a driver calls process() once per block
// (or processInterleaved() with any period), the control thread feeds commands and drains replies.
//
// Threads: [control] one control thread (OSC), [worker] one worker thread (asynchronous stage 3
// commands), [audio] the driver's thread. Commands cross on two bounded SPSC queues; replies on
// one; everything the audio thread is done with (nodes, buffers, stretch voices, recorder slots)
// goes back on one more, the hand-back lane (Released). Not here: the stretch threads
// (StretchWorker: they step stretch voices through their own rings, never the engine) and the
// recorder's disk thread (io/Recorder: it reads the slots' rings). The audio thread never
// allocates, frees, locks, logs or does I/O.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "dsp/Limiter.h"
#include "dsp/Ramp.h"
#include "server/rt/CaptureRing.h"
#include "server/rt/SampleRing.h"
#include "server/engine/Commands.h"
#include "server/engine/Node.h"
#include "server/engine/NodeMap.h"
#include "server/rt/SpscQueue.h"
#include "server/engine/TempoClock.h"
#include "server/engine/Wakeup.h"
#include "server/midi/MidiClock.h"
#include "server/midi/MidiEvent.h"

namespace loopd {

class Group;

struct EngineConfig {
    double sampleRate = 48000.0;
    int blockSize = 64;
    int numInputs = 2;
    int numOutputs = 2;
    int maxNodes = 4096;
    int numControlBuses = 16384;  // scsynth's default
    int maxBuffers = 8192;
    size_t commandQueueSize = 4096;
    size_t replyQueueSize = 16384;
    int schedulerCapacity = 8192;
    int maxCommandsPerBlock = 2048;
    float limiterCeilingDb = -0.3f;
    double declickSeconds = 0.005;
    double smoothSeconds = 0.010;
    bool realtimeClock = true;   // false (nrt): timetags are seconds from sample 0
    double bpm = 120.0;          // initial tempo, and the material tempo of followers that set none
    int beatsPerBar = 4;
    bool followTempo = true;     // false: players ignore `follow` (--disable-time-stretch)
    bool enableFilters = true;   // false: eq3 nodes pass audio through (--disable-filters)
    int cueOutput = -1;          // first channel of the stereo cue/headphone pair (-1: none)
    bool stretchAhead = false;   // a StretchWorker renders stretched players ahead (real time)
    double captureSeconds = 60.0; // always-on input history (--capture-seconds)
    int roundTripLatency = 0;    // driver input + output latency in frames (loopers compensate it)
};

struct EngineStats {
    int numNodes = 0, numGroups = 0, numBuffers = 0;
    double cpuAverage = 0.0, cpuPeak = 0.0; // % of the block's duration (wall clock)
    // The audio thread's own CPU time (CLOCK_THREAD_CPUTIME_ID) in its most expensive block (% of
    // the block's duration) and the blocks that used more CPU time than their duration. Time the
    // thread waited to be woken is not in them; time a hypervisor takes from a running virtual CPU
    // is, where the VM does not report steal time (this one does not).
    double cpuPeakOwn = 0.0;
    uint64_t overBudgetBlocks = 0;
    double busySeconds = 0.0; // wall-clock time spent rendering blocks since the start (mean load = its rate)
    uint64_t xruns = 0, lateCommands = 0, droppedCommands = 0, droppedReplies = 0;
    uint64_t missingBufferBlocks = 0, clockResyncs = 0, stretchUnderruns = 0;
    int64_t sampleTime = 0;
    float limiterMinGain = 1.0f;
    double bpm = 120.0, beats = 0.0;
    int beatsPerBar = 4;
};

class Engine {
public:
    // [control] Allocates everything the audio thread will ever use.
    explicit Engine(const EngineConfig& config);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const EngineConfig& config() const noexcept { return config_; }

    // [control] Queue a command; false when the queue is full (then `c` is left as it was, and
    // a dropped command is counted when `countDrop`).
    bool pushCommand(Command&& c, bool countDrop = true) noexcept;
    // [control] Free slots in the control queue (at least this many pushes will succeed).
    size_t commandSpace() const noexcept;
    // [worker] The same on the worker's own queue.
    bool pushWorkerCommand(Command&& c) noexcept;
    // [control] Drain one reply.
    bool popReply(Reply& r) noexcept;
    // [control] What the control loop sleeps on (Wakeup.h): posted at the end of every block
    // that queued replies, hand-backs or MIDI for it. Unarmed (no loop sleeps: offline renders,
    // tests) a post costs one atomic load.
    Wakeup& controlWake() noexcept { return *controlWake_; }
    // [any] Wakes the control thread (a worker's result, analysis events).
    void wakeControl() noexcept;
    // [control] The next thing the audio thread is done with (the hand-back lane; see Released).
    bool popReleased(Released& r) noexcept;
    // [control, audio stopped] Free what a Released holds (recordings excepted: see Released).
    static void freeReleased(Released& r) noexcept;

    // [audio] Render exactly one block: in[numInputs][blockSize] → out[numOutputs][blockSize].
    void process(const float* const* in, float* const* out) noexcept;
    // [audio] Device adapter for any period length, interleaved. A period that is a multiple of
    // the block size adds no latency; any other adds one block.
    void processInterleaved(const float* in, int inChannels, float* out, int outChannels, int numFrames) noexcept;
    // [audio] The driver, before processInterleaved(): a MIDI message that arrived at frame
    // `offset` of the period it is about to render (SysEx and longer messages are not taken).
    void midiIn(int offset, const uint8_t* bytes, size_t size) noexcept;
    // [one other thread] A MIDI message from an input with no sample time (AlsaMidi's thread):
    // taken at the next block's start.
    void midiFromThread(const uint8_t* bytes, size_t size) noexcept;
    // [audio] The driver, after processInterleaved(): the MIDI messages to send in that period,
    // write(frameOffset, bytes, size) in time order (what the control thread sent first, at 0).
    template <class F>
    void drainMidiOut(int numFrames, F&& write) noexcept { drainMidiOutFrom(periodOutStart_, numFrames, write); }
    // [audio] The same for the period of `numFrames` output frames from timeline sample `start`
    // (drivers calling process() themselves, and tests).
    template <class F>
    void drainMidiOutFrom(int64_t start, int numFrames, F&& write) noexcept {
        const int64_t periodOutStart = start;
        midi::MidiEvent e;
        while (midiFromControl_.tryPop(e)) write(0, e.bytes, e.size);
        int kept = 0;
        for (int i = 0; i < midiOutCount_; ++i) {
            const midi::MidiEvent& m = midiOut_[i];
            // MIDI leaves with the audio of its sample: the limiter's delay later.
            const int64_t at = m.sample + latencySamples() - periodOutStart;
            if (at >= numFrames) { midiOut_[kept++] = m; continue; } // a later period's (block FIFO)
            write(static_cast<int>(std::max<int64_t>(0, at)), m.bytes, m.size);
        }
        midiOutCount_ = kept;
    }
    // [any] Whether a driver takes the MIDI output (drainMidiOut each period); without one
    // what the engine would send is dropped each block.
    void setMidiOutput(bool taken) noexcept { midiOutputTaken_.store(taken, std::memory_order_release); }
    // [any] Whether a thread of its own sends the MIDI output (AlsaMidi) while no driver takes
    // it: each block then passes what it would send to popMidiOutForThread (at once, in order).
    void setMidiOutputThread(bool on) noexcept { midiOutputThread_.store(on, std::memory_order_release); }
    // [that thread] The next MIDI message to send.
    bool popMidiOutForThread(midi::MidiEvent& e) noexcept { return midiToThread_.tryPop(e); }
    // [control] While a learn waits for its event, the pads do not act (SooperLooper's rule).
    void pauseMidiPads(bool paused) noexcept { padsPaused_.store(paused, std::memory_order_release); }
    // [control] The next MIDI message that came in (its timeline sample in `sample`).
    bool popMidiIn(midi::MidiEvent& e) noexcept { return midiToControl_.tryPop(e); }
    // [control] Send a MIDI message as soon as possible (the next period). False when full.
    bool sendMidi(const midi::MidiEvent& e) noexcept { return midiFromControl_.tryPush(e); }
    // [any] The tempo of the incoming MIDI clock (0: none heard yet).
    double midiClockBpm() const noexcept { return midiClockBpm_.load(std::memory_order_relaxed); }
    // [any] Peers of the shared clock (Ableton Link) as its module last said (/status.reply).
    void setClockPeers(int n) noexcept { clockPeers_.store(n, std::memory_order_relaxed); }
    int clockPeers() const noexcept { return clockPeers_.load(std::memory_order_relaxed); }
    // [any] MIDI messages dropped because a queue was full.
    uint64_t midiDropped() const noexcept { return midiDropped_.load(std::memory_order_relaxed); }
    // [audio] The driver reports an over/underrun.
    void noteXrun() noexcept { xruns_.fetch_add(1, std::memory_order_relaxed); }
    // [audio] The driver's clock moved `frames` more than the engine rendered since the last
    // period (JACK's frame time after a missed cycle): what is timed against an outside clock
    // (the incoming MIDI clock's history) moves with it, so one xrun does not bend its tempo.
    void driverClockSlipped(int64_t frames) noexcept;

    // [any] Delay the master limiter adds. Real time: timetags are mapped this much earlier so
    // that a bundle's sound leaves the engine at its time. Offline writers drop this many frames
    // at the start (and render as many more at the end), so file frame k is timeline sample k.
    int latencySamples() const noexcept { return limiter_.latencySamples(); }
    // [any] Memory the engine allocated for itself at construction (the input capture ring
    // dominates), for the memory budget's account.
    int64_t fixedMemoryBytes() const noexcept;
    // [analysis] The live input for the analysis (server/analysis): mono, the inputs chosen with
    // setAnalysisInputs summed, one frame per engine frame from sample 0; a block that finds no
    // room is dropped whole and counted (the reader then starts over from where it stands).
    SampleRing& analysisRing() noexcept { return *analysisRing_; }
    uint64_t analysisDropped() const noexcept { return analysisDropped_.load(std::memory_order_acquire); }
    // [any] Which inputs the analysis hears: bit c = input c; 0 = all of them.
    void setAnalysisInputs(uint32_t mask) noexcept { analysisMask_.store(mask, std::memory_order_relaxed); }
    // [control] An onset of the input the analysis found (loopers in onset quantize snap to it).
    void noteOnset(int64_t sample) noexcept { onsetFeed_.add(sample); }
    static constexpr double kAnalysisRingSeconds = 4.0;

    // [any] The value of a control bus as the audio thread last wrote it (0 when out of range).
    float busValue(int32_t bus) const noexcept {
        return bus >= 0 && bus < config_.numControlBuses ? buses_[static_cast<size_t>(bus)].load(std::memory_order_relaxed) : 0.0f;
    }

    // [any] The largest absolute sample of the input / the output since the last call (meters).
    float takeInputPeak() noexcept { return inPeak_.exchange(0.0f, std::memory_order_relaxed); }
    float takeOutputPeak() noexcept { return outPeak_.exchange(0.0f, std::memory_order_relaxed); }

    // [any] With takePeaks the peaks (CPU, limiter) start again from here: only the one reader
    // whose peaks mean "since my last call" (/status) takes them; everyone else only reads.
    EngineStats stats(bool takePeaks = false) noexcept;
    int64_t sampleTime() const noexcept { return publishedSampleTime_.load(std::memory_order_acquire); }

    // [control] Before the audio starts: anchor NTP time for sample 0 (nrt: 0).
    void setTimeOrigin(uint64_t ntp) noexcept { anchorNtp_ = static_cast<double>(ntp); anchorSample_ = 0; }

    // The session log (--session-log) and its replay (--replay). Every command the engine takes
    // from its two queues is counted (and hashed: its kind, address and client), per queue, from
    // the start. Live, a block that took any publishes a SessionMark: the block's first sample, the
    // totals after it, and the clock's NTP time of that sample (what timetags were mapped
    // against). A replay renders block by block and lets the engine take exactly as many commands
    // as the live block did, against the same clock: the same commands land on the same samples.
    struct SessionMark {
        int64_t sample = 0;
        uint64_t control = 0, worker = 0; // commands taken from each queue since the start
        uint64_t hash = 0;                // over every command taken since the start
        double blockNtp = 0.0;
    };
    // [control, before the audio starts] Publish a SessionMark per block that took commands, and
    // write the engine's input (each block as the nodes hear it) into `inputTap` (a recorder slot
    // of numInputs channels; null: no input is kept).
    void startSessionLog(RecordSlot* inputTap);
    // [control] The next mark (in block order); marks that found the queue full are counted.
    bool popSessionMark(SessionMark& m) noexcept { return sessionMarks_ && sessionMarks_->tryPop(m); }
    uint64_t sessionMarksLost() const noexcept { return sessionMarksLost_.load(std::memory_order_relaxed); }
    // [control, audio stopped] The input tap is no longer written (the recorder may close it).
    void stopSessionLog() noexcept { inputTap_ = nullptr; }
    // [replay: the thread that calls process()] Before a block: take commands only up to these
    // totals, with the clock at `blockNtp` for this block (no wall clock is read in a replay).
    void setReplayBlock(uint64_t controlLimit, uint64_t workerLimit, double blockNtp) noexcept {
        controlLimit_ = controlLimit;
        workerLimit_ = workerLimit;
        replayNtp_ = blockNtp;
        replayClock_ = true;
    }
    // [replay] The totals so far (compare with the live block's mark).
    SessionMark sessionTotals() const noexcept { return SessionMark{renderPos_, controlTaken_, workerTaken_, commandHash_, blockNtp_}; }

private:
    struct Scheduled { int64_t sample; uint64_t seq; Command cmd; };

    void drainQueue(SpscQueue<Command>& q, int& budget, uint64_t& taken, uint64_t limit) noexcept;
    // Reply slots kept free for what one command and a block can answer (node events of a freed
    // group, beats, logs): the queues are not drained beyond that.
    static constexpr size_t kReplyReserve = 1024;
    void accept(Command& c) noexcept;
    void execute(Command& c) noexcept;
    void renderSegment(int offset, int numFrames) noexcept;
    void afterSegment() noexcept;
    void resolveStarts() noexcept;
    void collectEnded() noexcept;
    void disposeSubtree(Node* n) noexcept;
    void recomputeSolo() noexcept;
    void reply(uint16_t client, ReplyBody&& body) noexcept;
    void fail(const Command& c, FailCode code, int32_t a = 0, int32_t b = 0, ParamId p = ParamId::Count, float v = 0.f) noexcept;
    void nodeEvent(NodeEventKind kind, Node* n, uint16_t client = kNoClient, bool trace = false) noexcept;
    void dispose(Node* n) noexcept;
    void updateClock() noexcept;
    // [audio] A fixed-size log record to the control thread (spdlog there): text + one number.
    void rtLog(uint8_t level, const char* text, int64_t value) noexcept;
    int64_t sampleForTimetag(uint64_t tag) const noexcept;
    double sampleRateNtpScale() const noexcept;
    void heapPush(Scheduled&& s) noexcept;
    void forgetPreRoll(uint64_t seq) noexcept;
    void heapPop() noexcept;

    // Command handlers.
    void doNewNode(Command& c, cmd::NewNode& m) noexcept;
    void doSetParams(Command& c, cmd::SetParams& m) noexcept;
    void doRamp(Command& c, cmd::Ramp& m) noexcept;
    void doFree(Command& c, cmd::Free& m) noexcept;
    void doRun(Command& c, cmd::Run& m) noexcept;
    void doMove(Command& c, cmd::Move& m) noexcept;
    void doQuery(Command& c, cmd::Query& m) noexcept;
    void doFreeAll(Command& c, cmd::FreeAll& m) noexcept;
    // Owned nodes (Node::Owner) and groups holding them: a /fail and true, for generic commands.
    bool refuseOwned(Command& c, Node* n) noexcept;
    // /g_freeAll (deep: /g_deepFree) below g, leaving owned nodes and the groups that hold them.
    void releaseChildren(Group* g, bool deep) noexcept;
    void doQueryTree(Command& c, cmd::QueryTree& m) noexcept;
    void doSwapBuffer(Command& c, cmd::SwapBuffer& m) noexcept;
    void doAttachRecorder(Command& c, cmd::AttachRecorder& m) noexcept;
    void doDetachRecorder(Command& c, cmd::DetachRecorder& m) noexcept;
    void doStartGroup(Command& c, cmd::StartGroup& m) noexcept;
    // [audio] Into the hand-back lane (what does not fit waits in unsent_, sent first next block).
    void release(Released r) noexcept;
    void sendUnreleased() noexcept;
    // [audio] What nodes staged in ProcessContext::Report::handBack, into the lane.
    void handBackBuffers() noexcept;
    // [audio] What a command that will not run owns goes back to the control thread to be freed.
    void handBackPayload(Command& c) noexcept;
    void doClearSched() noexcept;
    void doGetParams(Command& c, cmd::GetParams& m) noexcept;
    void doSetBus(Command& c, cmd::SetBus& m) noexcept;
    void doGetBus(Command& c, cmd::GetBus& m) noexcept;
    void doMapParam(Command& c, cmd::MapParam& m) noexcept;
    void doUnit(Command& c, cmd::Unit& m) noexcept;
    // [audio] Parameters mapped to control buses follow them (each block, when they changed).
    void applyBusMaps() noexcept;
    // A looper buffer the engine is done with: loaded content, or a save copy (saved).
    void handBackBuffer(BufferData* data, int32_t nodeId, bool saved) noexcept {
        release(Released{saved ? Released::What::LoopSave : Released::What::LoopBuffer, data, nodeId});
    }
    void serviceGroupStarts() noexcept;

    EngineConfig config_;
    SpscQueue<Command> controlQueue_;
    SpscQueue<Command> workerQueue_;
    SpscQueue<Reply> replyQueue_;
    std::unique_ptr<Wakeup> controlWake_;
    bool controlPending_ = false; // [audio] this block queued something for the control thread
    SpscQueue<Released> released_;     // the hand-back lane (audio -> control)
    std::vector<Released> unreleased_;  // audio: what did not fit into it yet
    size_t numUnreleased_ = 0;

    // Audio-thread state.
    ProcessContext ctx_;
    NodeMap nodes_;
    Group* root_ = nullptr;
    std::vector<BufferData*> buffers_;
    std::vector<Scheduled> heap_;
    int heapSize_ = 0;
    uint64_t seq_ = 0;
    dsp::Limiter limiter_;
    std::vector<float> inputStorage_;
    std::vector<float> cueStorage_, scratch_;
    Bus cueBus_;
    std::vector<const float*> inputPtrs_;
    int64_t renderPos_ = 0;   // absolute sample of the next frame to render
    int numGroups_ = 1;
    int numLoadedBuffers_ = 0;
    static constexpr int kMaxRecorders = 8;
    RecordSlot* recorders_[kMaxRecorders] = {};
    int64_t missingLoggedAt_ = -1;     // sample time of the last "buffer not loaded" log line

    TempoClock tempo_;
    TempoForecast forecast_;
    // Stretched players created by timetagged /s_new commands still in the heap: they pre-roll
    // (Player::preRoll) so that they sound from their timetag's sample.
    struct PreRoll { Node* node; uint64_t seq; int64_t sample; };
    static constexpr int kMaxPreRolls = 64;
    PreRoll preRolls_[kMaxPreRolls] = {};
    int numPreRolls_ = 0;    // tempo commands waiting in the heap (for stretched followers)
    std::unique_ptr<CaptureRing> capture_;
    std::unique_ptr<SampleRing> analysisRing_;
    std::vector<float> analysisMix_; // blockSize floats
    std::atomic<uint32_t> analysisMask_{0};
    std::atomic<uint64_t> analysisDropped_{0};
    dsp::LinearRamp paGain_;      // main outputs while PA mute holds them
    struct GroupStart {
        bool active = false;
        int32_t ids[8] = {};
        int count = 0;
        int64_t deadline = 0;
        uint16_t client = kNoClient;
        const char* address = "";
    };
    GroupStart groupStarts_[8];

    // Clock: NTP (as double 32.32 units) of anchorSample_.
    double anchorNtp_ = 0.0;
    int64_t anchorSample_ = 0;
    double blockNtp_ = 0.0;
    bool clockStarted_ = false;

    // Device adapter.
    std::vector<float> adaptIn_, adaptOut_;
    std::vector<const float*> adaptInPtr_;
    std::vector<float*> adaptOutPtr_;
    int adaptFill_ = 0;

    // MIDI (drivers with MIDI ports: JackDriver).
    SpscQueue<midi::MidiEvent> midiToControl_{1024};
    SpscQueue<midi::MidiEvent> midiFromControl_{1024};
    SpscQueue<midi::MidiEvent> midiFromThread_{1024};
    // [audio] A message at timeline sample `sample`: the clock's to applyClockIn, the rest to
    // the control thread.
    void acceptMidi(int64_t sample, const uint8_t* bytes, size_t size) noexcept;
    void applyClockPeer() noexcept;
    static constexpr int kMaxMidiOut = 1024;
    midi::MidiEvent midiOut_[kMaxMidiOut];  // generated on the audio thread, in time order
    int midiOutCount_ = 0;
    int64_t periodOutStart_ = 0;           // timeline sample of the current period's first output frame
    ClockPeer* clockPeer_ = nullptr;       // cmd::ClockPeerOn (Ableton Link); not owned
    bool clockPeerFollow_ = false;
    std::atomic<bool> midiOutputTaken_{false}, midiOutputThread_{false};
    SpscQueue<midi::MidiEvent> midiToThread_{2048};
    // MIDI input of the current period, by sample (applyMidiIn takes each in its block).
    static constexpr int kMaxMidiIn = 512;
    midi::MidiEvent midiIn_[kMaxMidiIn] = {};
    int midiInCount_ = 0;
    midi::MidiClockFollower clockFollower_;
    bool midiTempo_ = false;               // cmd::MidiClockIn
    bool clockInStart_ = false, clockInContinue_ = false;
    int songPosition_ = 0;                 // in MIDI beats (sixteenth notes)
    int64_t ticksSinceStart_ = -1;         // external ticks since the one that was beat 0 (-1: none)
    int64_t startTickSample_ = 0;          // that tick's sample
    double tickBase_ = 0.0;                // the beat that tick was (0, or the Song Position)
    std::atomic<double> midiClockBpm_{0.0};
    std::atomic<int> clockPeers_{0};
    // [audio] The MIDI input of this block: the clock's messages (tempo, Start/Continue on
    // their tick's sample), pad bindings acted on, the rest passed to the control thread.
    void applyMidiIn() noexcept;
    // [audio] The pad bindings of a channel message (true: some acted on it).
    bool applyPads(const uint8_t* bytes, int64_t sample) noexcept;
    midi::MidiPadTable* pads_ = nullptr;
    std::atomic<bool> padsPaused_{false};
    bool midiClockOut_ = false;            // cmd::MidiClockOut
    bool midiStartPending_ = false;        // Start goes out with the next bar's first tick
    // [audio] Queue a message to leave at timeline sample `sample` (dropped and counted when full).
    void emitMidi(int64_t sample, uint8_t b0, uint8_t b1 = 0, uint8_t b2 = 0, uint8_t size = 1) noexcept;
    std::atomic<uint64_t> midiDropped_{0};

    // Session log and replay (SessionMark).
    uint64_t controlTaken_ = 0, workerTaken_ = 0, commandHash_ = 0;
    uint64_t controlLimit_ = UINT64_MAX, workerLimit_ = UINT64_MAX;
    bool replayClock_ = false;
    double replayNtp_ = 0.0;
    std::unique_ptr<SpscQueue<SessionMark>> sessionMarks_;
    std::atomic<uint64_t> sessionMarksLost_{0};
    RecordSlot* inputTap_ = nullptr;

    // Published statistics.
    std::atomic<uint64_t> xruns_{0}, late_{0}, droppedCommands_{0}, droppedReplies_{0};
    std::atomic<uint64_t> missingBufferBlocks_{0}, clockResyncs_{0}, stretchUnderruns_{0};
    uint64_t underrunsLogged_ = 0;
    std::atomic<int> statNodes_{1}, statGroups_{1}, statBuffers_{0};
    std::atomic<double> cpuAverage_{0.0}, cpuPeak_{0.0}, cpuPeakOwn_{0.0};
    std::atomic<uint64_t> overBudgetBlocks_{0};
    // [audio] Whether the next block reads the thread's CPU clock (Engine::process).
    bool measureOwnNext_ = true;
    std::atomic<double> busySeconds_{0.0};
    OnsetFeed onsetFeed_;
    std::atomic<int64_t> publishedSampleTime_{0};
    std::atomic<float> limiterMinGain_{1.0f};
    std::atomic<float> inPeak_{0.0f}, outPeak_{0.0f};
    std::unique_ptr<std::atomic<float>[]> buses_; // control buses: written by the audio thread
    int busMaps_ = 0;                              // parameters mapped to buses, over all nodes
    static void raisePeak(std::atomic<float>& peak, const float* x, size_t n) noexcept;
    std::atomic<double> statBpm_{120.0}, statBeats_{0.0};
    std::atomic<int> statBeatsPerBar_{4};
};

} // namespace loopd
