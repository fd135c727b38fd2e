#pragma once
// Plain data that crosses threads. Commands go control/worker → audio through bounded SPSC
// queues; replies go audio → control. Every alternative is a small fixed-size struct; pointers
// in them transfer ownership (a node or buffer built on the control/worker thread, or handed
// back to be freed there).
#include <cstdint>
#include <ctime>
#include <variant>
#include <vector>

#include "server/engine/Params.h"

namespace loopd::midi { struct MidiPadTable; }

namespace loopd {

class Node;
class ClockPeer;
struct BufferData;
struct RecordSlot;
struct StretchVoice;

constexpr uint16_t kNoClient = 0xFFFF;

// [any] The wall clock as an OSC timetag (NTP 32.32: seconds since 1900 in the high word).
inline uint64_t ntpNow() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    const double s = static_cast<double>(ts.tv_sec) + 2208988800.0 + static_cast<double>(ts.tv_nsec) * 1e-9;
    return static_cast<uint64_t>(s * 4294967296.0);
}
constexpr int kMaxParamsPerCommand = 12;

enum class AddAction : int32_t { Head = 0, Tail = 1, Before = 2, After = 3, Replace = 4 };

struct ParamValue {
    ParamId id;
    float value;
};

// Filled by the audio thread for /g_queryTree; allocated by the control thread.
struct TreeSnapshot {
    struct Entry {
        int32_t id;
        int32_t numChildren; // -1 for a non-group node
        uint8_t kind;
        int32_t buf;         // players: buffer id
        float gain;
    };
    int32_t rootId = 0;
    bool withControls = false;
    bool truncated = false;
    bool found = true;
    bool dump = false;     // /g_dumpTree: written to the log instead of answered
    bool dropped = false;  // /clearSched dropped the query before it ran: free it, say nothing
    std::vector<Entry> entries; // reserved by the control thread; the audio thread never grows it
    // A project's snapshot (/project_save): with `full`, `nodes[i]` describes `entries[i]` (the
    // /s_new type, who owns it, whether it is paused, every parameter it has) and the clock is
    // read in the same block. `nodes` is reserved like `entries`.
    bool full = false;
    struct NodeState {
        const char* type;      // Node::typeName(): static
        uint8_t owner;         // Node::Owner
        bool paused;
        bool held;             // waits for /start_group (Node::held)
        uint64_t has;          // bit p: the node has ParamId p
        float values[64];      // by ParamId
    };
    std::vector<NodeState> nodes;
    double bpm = 0.0, beats = 0.0;
    int32_t beatsPerBar = 0;
};

namespace cmd {
struct NewNode { Node* node; AddAction action; int32_t target; };
struct SetParams { int32_t id; int count; ParamValue params[kMaxParamsPerCommand]; };
struct Ramp { int32_t id; ParamId param; float target; float seconds; };
// `byOwner`: sent by the namespace that owns the node (Node::Owner); generic commands are not.
struct Free { int32_t id; bool byOwner = false; };
struct Run { int32_t id; bool run; };
struct Move { int32_t id; int32_t target; bool after; };
struct Query { int32_t id; bool trace = false; }; // trace: /n_trace (to the log)
// /g_freeAll (release every child) or, `deep`, /g_deepFree (release every non-group node in the
// subtree, keeping the groups). Both leave owned nodes (Node::Owner) and groups holding them.
struct FreeAll { int32_t group; bool deep = false; };
struct QueryTree { TreeSnapshot* snapshot; };
// Stage 3 of an asynchronous buffer command: swap the buffer table entry (data may be null).
// `completion`: the client's completion message waiting for it (0: none); `announce`: answer
// /done (false for /b_set and /b_setn, which scsynth does not answer).
// `at`: 0 at once, 1 on the clock's next beat, 2 on its next bar (this sample when it is one).
struct SwapBuffer { int32_t bufnum; BufferData* data; const char* address; uint32_t completion = 0; bool announce = true; uint8_t at = 0; };
struct Sync { int32_t id; };
struct AttachRecorder { RecordSlot* slot; int32_t group; };
struct DetachRecorder { int32_t slotId; }; // -1: all
// Tempo clock. mode: 0 jump, 1 linear ramp over `seconds`, 2 follow (99 % in `seconds` when
// rising, `downSeconds` when falling).
struct Tempo { double bpm; double seconds; double downSeconds; uint8_t mode; };
struct Meter { int32_t beatsPerBar; };
// Slide the clock's beat position by `beats` over `seconds` (TempoClock::nudge).
struct Nudge { double beats; double seconds; };
struct ClockReset {};
// Put the clock's beat position at `beats` (a project loaded: the clock goes on where it stood).
struct ClockSet { double beats; };
// MIDI clock out (on drivers with MIDI ports): 24 ticks per beat on their samples; switched on,
// Start goes out just before the tick that begins the next bar; switched off, Stop.
struct MidiClockOut { bool on; };
// The tempo source is an incoming MIDI clock: its tempo (midi::MidiClockFollower) sets the
// clock's, Start puts bar 1 on the next tick's sample, Continue the Song Position.
struct MidiClockIn { bool on; };
// A shared clock (Ableton Link) the engine's clock joins (peer != nullptr) or leaves: the peer
// outlives the engine (it is made once, at start or at the first /link 1). follow: tempo source
// link (the engine's own tempo changes are not committed; none are made).
struct ClockPeerOn { ClockPeer* peer; bool follow; };
// The MIDI pad bindings the audio thread acts on (midi/MidiPads.h); the table it replaces goes
// back by the hand-back lane.
struct MidiPads { midi::MidiPadTable* table; };
// Start held nodes together on one sample, once all are ready (buffers loaded), or after
// waitSeconds with whichever are ready (the others start when their buffers arrive).
struct StartGroup { int32_t ids[8]; int count; double waitSeconds; };
// A command for one node type (scsynth's /u_cmd): the engine finds node `id`, checks that it
// is of `kind` (a Node::Kind), and hands the command to it (Node::unitCommand); `op`, `a` and
// `b` mean what that type says (the looper's: Looper::Op). Whatever `buffer` and `voice` still
// point at afterwards (the node took neither, or gave back what they replace) goes back to the
// control thread to be freed; `bufferIsSave` marks a buffer lent for a copy (Released::LoopSave).
struct Unit {
    int32_t id;
    uint8_t kind;
    uint8_t op;
    float a = 0.0f;
    float b = 0.0f;
    BufferData* buffer = nullptr;
    StretchVoice* voice = nullptr;
    bool bufferIsSave = false;
};
// scsynth's /clearSched: drop every timetagged command still waiting.
struct ClearSched {};
// /s_get: the current values of some parameters of a node.
struct GetParams { int32_t id; int count; ParamId params[kMaxParamsPerCommand]; };
// Control buses (/c_set, /c_setn, /c_get, /c_getn): `count` consecutive buses from `first`.
struct SetBus { int32_t first; int count; float values[kMaxParamsPerCommand]; };
struct GetBus { int32_t first; int count; bool asSetn; };
// /n_map: a parameter follows a control bus (bus -1: stops following).
struct MapParam { int32_t id; ParamId param; int32_t bus; };
struct LoopGlobals { int32_t syncSource; int32_t anchorId; double eighthPerCycle; double lenienceSeconds; bool paMute; };
} // namespace cmd

using CommandBody = std::variant<cmd::NewNode, cmd::SetParams, cmd::Ramp, cmd::Free, cmd::Run,
                                 cmd::Move, cmd::Query, cmd::FreeAll, cmd::QueryTree,
                                 cmd::SwapBuffer, cmd::Sync, cmd::AttachRecorder, cmd::DetachRecorder,
                                 cmd::Tempo, cmd::Meter, cmd::Nudge, cmd::ClockReset, cmd::ClockSet, cmd::MidiClockOut, cmd::MidiClockIn, cmd::ClockPeerOn, cmd::MidiPads, cmd::StartGroup,
                                 cmd::Unit, cmd::LoopGlobals, cmd::ClearSched, cmd::GetParams, cmd::SetBus,
                                 cmd::GetBus, cmd::MapParam>;

struct Command {
    uint64_t timetag = 0;     // NTP 32.32; 0 or 1 = now
    const char* address = ""; // static string: the OSC address, for /fail and /done
    uint16_t client = kNoClient;
    CommandBody body = cmd::Sync{0};
};

enum class FailCode : uint8_t {
    NodeNotFound, GroupNotFound, NodeIdInUse, NotAGroup, NoSuchParam, BadParamValue, NotRampable,
    SchedulerFull, TooManyNodes, TreeTooDeep, MoveIntoSelf, CannotFreeRoot, RecorderGroupNotFound,
    RecorderNotFound, RecorderSlotsFull, TreeTruncated, GroupStartsFull, GroupStartTimedOut,
    WrongNodeKind, LoopValueOutOfRange, LoopBusy, OwnedNode, HoldsOwnedNode, BusOutOfRange, TooManyMaps,
};

// Why a unit command failed (Node::unitCommand): reported as /fail with the node id, `b` and `value`.
struct UnitFail { FailCode code; int32_t b = 0; float value = 0.0f; };

enum class NodeEventKind : uint8_t { Go, End, Off, On, Move, Info };

// The hand-back lane: everything the audio thread is done with travels back to the control
// thread this one way (Engine::release, Engine::popReleased), which frees it, or finishes with
// it first (a recording's file, a loop's saved copy). Nothing is freed on the audio thread, and
// nothing is lost: what does not fit waits on the audio side and goes with a later block; what is
// still in the lane when the engine is destroyed is freed then (recordings excepted: the Recorder
// owns their slots and closes their files).
struct Released {
    enum class What : uint8_t {
        Node,        // a node out of the tree (with its subtree's nodes, each on its own)
        Buffer,      // a buffer swapped out, or new content nobody took
        LoopBuffer,  // loop content a looper has copied (id: the looper)
        LoopSave,    // a looper's copy for /sl/#/save_loop (id: the looper; numFrames -1: not done)
        Voice,       // a stretch voice nobody took
        Recording,   // a recorder slot detached after recording (client: who gets /done)
        Rejected,    // a recorder slot that never started
        MidiPads,    // a MIDI pad table replaced (midi::MidiPadTable)
    };
    What what = What::Buffer;
    void* ptr = nullptr;
    int32_t id = 0;
    uint16_t client = kNoClient;
};

namespace reply {
struct Done { const char* address; int32_t id; bool hasId; };
struct Fail { const char* address; FailCode code; int32_t a; int32_t b; ParamId param; float value; };
struct NodeEvent {
    NodeEventKind kind; int32_t id, parent, prev, next; bool isGroup; int32_t head, tail;
    int64_t sampleTime;
    bool trace = false;   // /n_trace: to the log
    uint8_t nodeKind = 0; // Node::Kind
};
struct ParamValues { int32_t id; int count; ParamId params[kMaxParamsPerCommand]; float values[kMaxParamsPerCommand]; };
struct BusValues { int32_t first; int count; bool asSetn; float values[kMaxParamsPerCommand]; };
struct Late { double seconds; const char* address; };
struct Synced { int32_t id; };
// A buffer table entry changed (the old content goes back by the hand-back lane): answer /done
// and run the completion message, or (announce false) drop the completion message.
struct BufferSwapped { int32_t bufnum; const char* address; uint32_t completion; bool announce; };
struct TreeReady { TreeSnapshot* snapshot; };
struct Log { uint8_t level; char text[128]; };
struct Beat { int64_t beat; int32_t bar; int32_t beatInBar; double bpm; int64_t sampleTime; };
} // namespace reply

using ReplyBody = std::variant<reply::Done, reply::Fail, reply::NodeEvent, reply::Late,
                               reply::Synced, reply::BufferSwapped, reply::TreeReady,
                               reply::Log, reply::Beat, reply::ParamValues, reply::BusValues>;

struct Reply {
    uint16_t client = kNoClient;
    ReplyBody body = reply::Synced{0};
};

} // namespace loopd
