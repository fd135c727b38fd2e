#pragma once
// The control side of the server: parses OSC packets and bundles, validates every command
// (a /fail with a reason for anything wrong), turns them into engine commands or worker jobs,
// and turns the engine's replies into OSC. Owns the client table and /notify registrations.
//
// Threads: handlePacket() and pollReplies() on the control thread; worker jobs it posts run on
// the worker thread; send() may be called from the control, worker and recorder threads.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <osc/OscReceivedElements.h>

#include "osc/Message.h"
#include "osc/Transport.h"
#include "server/control/Movement.h"
#include "server/io/AudioFile.h"
#include "server/engine/Engine.h"
#include "server/control/LogLimiter.h"
#include "server/engine/MemoryBudget.h"
#include "server/io/PathPolicy.h"
#include "server/io/Recorder.h"
#include "server/engine/StretchWorker.h"
#include "server/io/Worker.h"
#include "server/nodes/Registry.h"

namespace loopd {

class Player;
class Looper;

struct ControllerOptions {
    double bpm = 120.0;
    int beatsPerBar = 4;
    std::string driverName = "none";
    int periodFrames = 0;
    int64_t maxBufferSamples = int64_t(512) << 20; // floats per buffer (2 GiB)
    bool offline = false;
    MovementConfig movement;
    bool followTempo = true;      // false: --disable-time-stretch
    std::string stretchMethod = "rate";
    float stemMasterGain = 0.8f;  // the Crowdstream server's master volume
    double loopSeconds = 40.0;    // loop memory per loop (SooperLooper's -t default)
    double undoSeconds = 40.0;    // extra memory per loop for undo history
    // The memory budget over buffers, loops, undo history and stretch voices (--max-memory-mb).
    int64_t maxMemoryBytes = MemoryBudget::halfOfPhysicalMemory();
};

class Controller {
public:
    using Sender = std::function<bool(const osc::Endpoint&, const char*, size_t)>;

    Controller(Engine& engine, Worker& worker, Recorder& recorder, const PathPolicy& paths,
               const ControllerOptions& options);
    ~Controller();
    Controller(const Controller&) = delete;
    Controller& operator=(const Controller&) = delete;

    void setSender(Sender sender) { sender_ = std::move(sender); }     // [control] before use
    void setDriverInfo(const std::string& name, int periodFrames);      // [control]
    // [control] Real time: stretched players render ahead on this worker (null: inline).
    void setStretchWorker(StretchWorker* worker) { stretchWorker_ = worker; }

    // [control] One OSC packet (message or bundle) from `from`. False (TCP only): the command
    // queue has no room for it now; nothing was done, deliver it again later (back-pressure).
    bool handlePacket(const char* data, size_t size, const osc::Endpoint& from);
    // [control] Deliver the engine's replies; call every few milliseconds.
    void pollReplies();
    // [control] Stop every recording and wait until the files are closed (shutdown, end of nrt).
    void stopRecordings();

    bool quitRequested() const noexcept { return quit_.load(); }
    // [any] The memory budget every allocation a client asks for is counted against.
    MemoryBudget& memoryBudget() noexcept { return budget_; }
    uint64_t failCount() const noexcept { return fails_.load(); }

    // [any] Send to a registered client (thread-safe).
    void send(uint16_t client, const osc::MessageBuilder& m);
    // [control] A TCP client left: it is logged out (its /notify registration and client id).
    void forgetTcpClient(uint64_t tcpId);
    // [any] Send to every client registered with /notify.
    void notifyAll(const osc::MessageBuilder& m) { broadcast(m); }
    // [control] Run a message as if a client had sent it (startup flags); failures are logged.
    void runInternal(const std::vector<char>& packet);
    // [control] The URL /ping answers with (osc.udp://host:port/).
    void setHostUrl(const std::string& url) { slHostUrl_ = url; }

private:
    struct Msg {
        const char* address;
        osc::ArgReader& args;
        uint64_t timetag;
        uint16_t client;
        uint32_t completion = 0; // a completion message waiting for this command (registerCompletion)
    };
    using Handler = void (Controller::*)(Msg&);
    // Each namespace registers its own addresses (the native server, scsynth's extras,
    // Crowdstream, SooperLooper): the dispatcher finds the handler by address.
    void on(const char* address, Handler h) { handlers_[address] = {address, h}; }

    // One packet from a known client. `mayDefer`: over TCP, refuse it (false) when the command
    // queue has no room; otherwise run it, waiting for room where needed.
    bool handleFrom(uint16_t client, const char* data, size_t size, bool tcp, bool mayDefer);
    void handleBundle(const ::osc::ReceivedBundle& b, uint16_t client, int depth);
    // Completion messages. [control] registerCompletion keeps a packet until its command ends;
    // [any] dropCompletion forgets it (the command failed), finishAsync queues the end of a
    // command finished on the worker, failAsync fails it; [control] complete runs the packet,
    // then answers /done <address> <id>.
    uint32_t registerCompletion(uint16_t client, std::vector<char> packet);
    void dropCompletion(uint32_t id);
    void finishAsync(uint16_t client, const char* address, int32_t id, uint32_t completion);
    void failAsync(uint16_t client, const char* address, const std::string& reason, uint32_t completion);
    void complete(uint16_t client, const char* address, int32_t id, uint32_t completion);
    void handleMessage(const ::osc::ReceivedMessage& m, uint64_t timetag, uint16_t client);
    uint16_t clientFor(const osc::Endpoint& e);
    // [any] /fail to the client (unless it turned errors off with /error) and to the log.
    void fail(uint16_t client, const char* address, const std::string& reason, bool log = true);
    void done(uint16_t client, const char* address, std::initializer_list<int32_t> ids = {});
    bool push(Msg& m, CommandBody&& body);
    bool pushFromWorker(uint16_t client, const char* address, uint64_t timetag, CommandBody&& body);
    std::string failReason(const reply::Fail& f) const;
    void broadcast(const osc::MessageBuilder& m);
    int32_t bufnum(Msg& m);
    std::string checkedPath(Msg& m, const std::string& path, bool forWriting);
    // How files load here: the server's rate, the buffer limit, the memory budget naming `what`.
    LoadOptions loadOptions(const std::string& what);
    void applyParams(Msg& m, Node& node);
    // [control] A node the engine gave back (or never took): unregister, then delete.
    void disposeNode(Node* n);
    NodeSetup nodeSetup(); // what building a node needs (see Registry.h)
    void takeBack(Released& x); // from the hand-back lane
    static std::pair<AddAction, int32_t> placement(osc::ArgReader& args); // addAction targetID
    // A parameter value: a number, or a named value (`mode lp`, `lfoShape saw`).
    static float paramValue(osc::ArgReader& args, ParamId id, const std::string& name);

    // Handlers.
    void hError(Msg&); void hSynthDef(Msg&); void hReplyFormat(Msg&);
    void hStatus(Msg&); void hVersion(Msg&); void hNotify(Msg&); void hDumpOsc(Msg&); void hQuit(Msg&);
    void hSync(Msg&); void hSNew(Msg&); void hGNew(Msg&); void hNSet(Msg&); void hNRamp(Msg&);
    void hNFree(Msg&); void hNRun(Msg&); void hNBefore(Msg&); void hNAfter(Msg&); void hNQuery(Msg&);
    void hGFreeAll(Msg&); void hGDeepFree(Msg&); void hGQueryTree(Msg&);
    void hBAlloc(Msg&); void hBAllocRead(Msg&); void hBRead(Msg&); void hBWrite(Msg&); void hBFree(Msg&);
    void hBZero(Msg&); void hBQuery(Msg&);
    void hRecStart(Msg&); void hRecStop(Msg&);
    void move(Msg&, bool after);
    // Tempo clock.
    void hTempo(Msg&); void hSetTempo(Msg&); void hSetMeter(Msg&); void hPrintClock(Msg&); void hMovement(Msg&);
    // scsynth's commands beyond loopd's core (ScsynthExtras.cpp).
    void registerScsynthExtras();
    void hGDumpTree(Msg&); void hClearSched(Msg&); void hNTrace(Msg&); void hSGet(Msg&); void hNMap(Msg&);
    void hCSet(Msg&); void hCSetn(Msg&); void hCGet(Msg&); void hCGetn(Msg&);
    void hBGet(Msg&); void hBGetn(Msg&); void hBSet(Msg&); void hBSetn(Msg&); void hBGen(Msg&); void hBClose(Msg&);
    void dumpTree(const TreeSnapshot& s);
    int32_t busIndex(Msg& m, const char* what, int32_t count);
    // [control] Change single samples of a buffer (copy on write, on the worker).
    void changeSamples(uint16_t client, const char* address, int32_t b, std::vector<std::pair<int32_t, float>> values);
    // Crowdstream compatibility (Crowdstream.cpp).
    void registerCrowdstream();
    void hLoadBuffer(Msg&); void hPlayStem(Msg&); void hStopStem(Msg&); void hStemVolume(Msg&);
    void hCrossfadeLevels(Msg&); void hDeckLevels(Msg&); void hDeckFilter(Msg&); void hDeckEq(Msg&);
    void hDeckEqAll(Msg&); void hReset(Msg&); void hPlay(Msg&); void hCue(Msg&); void hStartGroup(Msg&);
    void hFade(Msg&); void hScheduleCAt(Msg&); void hGetStatus(Msg&); void hTestTone(Msg&); void hMixerCleanup(Msg&);
    int deckIndex(osc::ArgReader& args);             // A..D → 0..3, or ArgError
    void ensureDecks(Msg& m);
    uint64_t baseTag(const Msg& m) const;            // the message's time, or now
    static uint64_t addSeconds(uint64_t tag, double seconds);
    void loadInto(Msg& m, int32_t bufnum, const std::string& path, const char* address);
    bool bufferKnown(int32_t bufnum);
    void startStem(Msg& m, int32_t bufnum, float rate, float volume, bool loop, float startFrac, uint64_t at, bool hold);
    void setDeckGain(Msg& m, int deck, float gain);
    void setEqBand(Msg& m, int deck, int band, float gain);
    static float cutOnlyGain(float percent);

    // SooperLooper namespace (SooperLooper.cpp).
    struct SlLoop {
        int32_t node = -1;
        Looper* looper = nullptr;           // owned by the engine; valid until disposeNode
        int channels = 2;
        double memorySeconds = 0.0;
        std::map<std::string, float> controls; // as clients set them
        bool soloed = false;
        int lastState = -99;
        std::chrono::steady_clock::time_point downAt[32];
        bool held[32] = {};
        bool shifter = false;          // a pitch shifter was sent to it
        MemoryLease shifterMemory;
    };
    struct SlRegistration {
        int loop; std::string ctrl, url, path; bool autoUpdate; float last; uint16_t client;
    };
    struct SlSave { std::string path, sample, url, errPath; uint16_t client; int index; };
    void registerSooperLooper();
    void hSl(Msg&);
    void hSlPing(Msg&); void hSlMidiBindings(Msg&); void hSlLoopAdd(Msg&); void hSlLoopDel(Msg&); void hSlGlobalSet(Msg&); void hSlGlobalGet(Msg&);
    void hSlRegister(Msg&); void hSlUnregister(Msg&); void hSlRegisterUpdate(Msg&);
    void hSlSaveSession(Msg&); void hSlLoadSession(Msg&);
    void slCommand(Msg& m, int index, const std::string& verb);
    void slSolo(Msg& m, int index);
    void slSet(Msg& m, int index);
    void slGet(Msg& m, int index);
    void slGlobalSet(Msg& m, const std::string& name, float value);
    void slGlobalGet(Msg& m, const std::string& name, const std::string& url, const std::string& path);
    float slGlobalValue(const std::string& name);
    void slTapTempo(Msg& m);
    float slValue(const SlLoop& loop, const std::string& name) const;
    float slDefault(const std::string& name) const;
    void slRegister(Msg& m, int index, const std::string& verb);
    void slNotifyChange(int index, const std::string& name, float value);
    void slSaveLoop(Msg& m, int index);
    void slLoadLoop(Msg& m, int index);
    void slLoopBuffer(BufferData* data, int32_t nodeId, bool saved);
    void slError(Msg& m, const std::string& url, const std::string& path, const std::string& reason);
    std::vector<int> slTargets(Msg& m, int index);
    void ensureLooperGroup(Msg& m);
    int addLoop(Msg& m, int channels, double seconds);
    void pushLoopGlobals(Msg& m);
    void sendConfigUpdates();
    void pollLoopers();
    void forgetLooperNode(const Looper* looper);
    void attachShifter(Msg& m, SlLoop& loop);
    osc::MessageBuilder slPingReply(const std::string& path, bool withId) const;
    std::optional<osc::Endpoint> endpointForUrl(const std::string& url);
    void sendToUrl(uint16_t client, const std::string& url, const osc::MessageBuilder& m);

    // Worker-side (run on the worker thread).
    void swapBuffer(uint16_t client, const char* address, int32_t bufnum, std::unique_ptr<BufferData> data,
                    uint32_t completion = 0, bool announce = true);

    Engine& engine_;
    Worker& worker_;
    Recorder& recorder_;
    const PathPolicy& paths_;
    ControllerOptions options_;
    MemoryBudget budget_;
    MemoryLease engineMemory_; // the engine's own rings and queues, counted from the start
    Sender sender_;
    ProcessContext paramCtx_; // engine constants for validating parameters on this thread
    std::unordered_map<std::string, std::pair<const char*, Handler>> handlers_;

    std::mutex clientsMutex_;
    std::vector<osc::Endpoint> clients_;
    size_t nextEvict_ = 0;
    std::vector<uint16_t> notify_;
    static constexpr int32_t kMaxLogins = 32;  // sclang refuses more (ServerOptions:maxLogins_)
    std::array<uint16_t, kMaxLogins> loginOf_ = filledLogins(); // client id -> client slot (kNoClient: free)
    static std::array<uint16_t, kMaxLogins> filledLogins() { std::array<uint16_t, kMaxLogins> a; a.fill(kNoClient); return a; }
    bool dumpOsc_ = false;
    std::atomic<bool> quit_{false};
    struct Completion { uint16_t client = kNoClient; std::vector<char> packet; };
    struct Finished { uint16_t client; const char* address; int32_t id; uint32_t completion; };
    std::mutex completionsMutex_;               // control + worker
    std::unordered_map<uint32_t, Completion> completions_;
    std::vector<Finished> finished_;
    uint32_t nextCompletion_ = 1;
    int8_t bundleErrors_ = 0;                   // /error -1 (off) or -2 (on) for the bundle in hand
    bool synthDefRefused_ = false;              // this packet already answered a SynthDef /fail
    bool lossless_ = false;                    // the packet being handled came over TCP
    static constexpr size_t kCommandsPerMessage = 12;
    std::atomic<uint64_t> fails_{0};
    LogLimiter failLog_{20.0, 5.0}; // bursts of 20 /fail log lines, then 5 a second
    int32_t nextAutoId_ = -1000;               // server-chosen node ids (negative, as scsynth's)
    std::vector<bool> errorsOff_;              // per client: /error 0 [clientsMutex_]
    std::vector<bool> float32Only_;            // per client: /reply_format float32 [clientsMutex_]
    std::unordered_set<uint16_t> synthDefWarned_; // clients told once in the log that SynthDefs are refused
    std::thread::id controlThread_;

    std::vector<BufferData*> workerBuffers_; // the worker's view of the buffer table
    std::mutex knownMutex_;
    std::unordered_set<int32_t> knownBuffers_; // loaded or loading (control + worker)

    // Tempo clock printing and Crowdstream state (control thread).
    StretchWorker* stretchWorker_ = nullptr;
    bool printClock_ = false;
    float defaultStretch_ = 0.0f; // --stretch-method as a `stretch` value (0 = varispeed)
    bool decksCreated_ = false;
    float deckLevels_[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    std::unordered_map<int32_t, int32_t> stemNodes_; // buffer id → playing node id
    int32_t armed_[4] = {-1, -1, -1, -1};            // cued node per deck
    int32_t nextStemNode_ = 2000000;
    uint64_t t0Tag_ = 0;                             // /reset time (for /schedule_c_at)
    int64_t rateSampleTime_ = 0;
    std::chrono::steady_clock::time_point rateWallTime_;
    double actualRate_ = 0.0;
    std::chrono::steady_clock::time_point lastTroubleCheck_;
    uint64_t notifiedXruns_ = 0, notifiedUnderruns_ = 0;

    // SooperLooper state (control thread).
    std::string slAddress_;                          // the /sl/... address being handled
    std::string slHostUrl_ = "osc.udp://localhost:57120/";
    std::vector<SlLoop> slLoops_;
    bool looperGroupCreated_ = false;
    int32_t nextLoopNode_ = 801;
    int slSelected_ = 0;
    int slSyncSource_ = 1;                           // loop 1 (index 0) is the anchor
    double slEighthPerCycle_ = 16.0;
    double slLenience_ = 0.1;
    bool slPaMute_ = false;
    std::map<std::string, float> slGlobals_;
    std::vector<std::pair<std::string, std::string>> slConfigListeners_;
    std::vector<SlRegistration> slRegistrations_;
    std::map<int32_t, SlSave> slSaves_;              // node → save in flight
    std::unordered_map<std::string, osc::Endpoint> urlCache_;
    std::chrono::steady_clock::time_point slLastAuto_;
    int32_t slEngineId_ = 0;                         // random, non-zero: slgui notices a restart by it
    std::vector<std::chrono::steady_clock::time_point> slTaps_; // tap_tempo presses
};

} // namespace loopd
