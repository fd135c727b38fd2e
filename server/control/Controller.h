#pragma once
// The control side of the server: parses OSC packets and bundles, finds the handler of each
// message by its address (the dispatcher), validates every command (a /fail with a reason for
// anything wrong), turns them into engine commands or worker jobs, and turns the engine's replies
// into OSC. It is also the native server: clients and /notify registrations, nodes, buffers,
// recording, completion messages, scsynth's extra commands. The other namespaces are modules
// (Module.h: tempo, Crowdstream, SooperLooper) that register their own addresses, own their
// state and use the Controller only through Module's services.
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
#include "server/control/ControllerOptions.h"
#include "server/control/Module.h"

namespace loopd {

class Buffers;
class Nodes;
class SessionLog;

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
    // [control] How long the control loop may sleep in poll(2) when nothing wakes it: the
    // shortest any module asks for, else kIdlePollMs (the 100 ms trouble check's pace).
    static constexpr int kIdlePollMs = 100;
    int idleTimeoutMs() const;
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
    // [control] Keep every packet, completion and engine mark in this session log (--session-log).
    void setSessionLog(SessionLog* log) { sessionLog_ = log; }
    // [control] Move the engine's marks into the session log and write it (pollReplies does).
    void flushSessionLog();
    // [replay] Run completion message `id` now (false: it has not finished in the replay).
    bool runCompletion(uint32_t id);
    // [any] Send to every client registered with /notify.
    void notifyAll(const osc::MessageBuilder& m) { broadcast(m); }
    // [control] Run a message as if a client had sent it (startup flags); failures are logged.
    void runInternal(const std::vector<char>& packet);
    // [control] The URL /ping answers with (osc.udp://host:port/).
    void setHostUrl(const std::string& url) { hostUrl_ = url; }
    // [control] Another module (Module.h): it registers its addresses as it is built and is
    // told of the engine's events from then on. The Controller owns it.
    template <class M, class... Args>
    M& addModule(Args&&... args) {
        auto m = std::make_unique<M>(*this, std::forward<Args>(args)...);
        M& ref = *m;
        modules_.push_back(std::move(m));
        return ref;
    }

private:
    friend class Module; // the services a module may use (Module.h)
    using Handler = std::function<void(Msg&)>;
    // The dispatcher: every namespace registers its own addresses (the native server and
    // scsynth's extras here, the modules through Module::on); a handler is found by the exact
    // address, then by the longest registered prefix (/sl/...).
    void on(const char* address, void (Controller::*h)(Msg&)) {
        route(address, false, [this, h](Msg& m) { (this->*h)(m); });
    }
    void route(const char* address, bool prefix, Handler h);

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
    std::string checkedPath(Msg& m, const std::string& path, bool forWriting, PathPolicy::Kind kind = PathPolicy::Kind::File);
    // [control] A node the engine gave back (or never took): unregister, then delete.
    void disposeNode(Node* n);
    NodeSetup nodeSetup(); // what building a node needs (see Registry.h)
    void takeBack(Released& x); // from the hand-back lane

    // Handlers: the server's own commands (the node and buffer commands are modules).
    void hError(Msg&); void hSynthDef(Msg&); void hReplyFormat(Msg&);
    void hStatus(Msg&); void hVersion(Msg&); void hNotify(Msg&); void hDumpOsc(Msg&); void hQuit(Msg&);
    void hSync(Msg&); void hRecStart(Msg&); void hRecStop(Msg&);
    // scsynth's /clearSched and the /g_dumpTree printout (ScsynthExtras.cpp).
    void registerScsynthExtras();
    void hClearSched(Msg&);
    void dumpTree(const TreeSnapshot& s);
    // [control] Every module hears of a node a client made (Module::onNodeCreated).
    void nodeCreated(Msg& m, Node& node) {
        for (auto& mod : modules_) mod->onNodeCreated(m, node);
    }

    Engine& engine_;
    Worker& worker_;
    Recorder& recorder_;
    const PathPolicy& paths_;
    ControllerOptions options_;
    MemoryBudget budget_;
    MemoryLease engineMemory_; // the engine's own rings and queues, counted from the start
    Sender sender_;
    ProcessContext paramCtx_; // engine constants for validating parameters on this thread

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
    std::vector<bool> errorsOff_;              // per client: /error 0 [clientsMutex_]
    std::vector<bool> float32Only_;            // per client: /reply_format float32 [clientsMutex_]
    std::unordered_set<uint16_t> synthDefWarned_; // clients told once in the log that SynthDefs are refused
    std::thread::id controlThread_;
    SessionLog* sessionLog_ = nullptr;
    uint64_t marksLostLogged_ = 0;
    // A replay: finished commands whose completion message waits for its turn in the log.
    std::vector<Finished> heldCompletions_;
    bool runningHeld_ = false;


    // Module-independent state (control thread).
    StretchWorker* stretchWorker_ = nullptr;
    float defaultStretch_ = 0.0f; // --stretch-method as a `stretch` value (0 = varispeed)
    int64_t rateSampleTime_ = 0;
    std::chrono::steady_clock::time_point rateWallTime_;
    double actualRate_ = 0.0;
    std::chrono::steady_clock::time_point lastTroubleCheck_;
    uint64_t notifiedXruns_ = 0, notifiedUnderruns_ = 0;
    std::string hostUrl_ = "osc.udp://localhost:57120/";

    // The dispatcher's tables and the modules (tempo, Crowdstream, SooperLooper).
    std::unordered_map<std::string, std::pair<const char*, Handler>> handlers_;
    std::vector<std::pair<std::string, Handler>> prefixes_;
    std::string routedAddress_; // the whole address of the message a prefix route is handling
    std::vector<std::unique_ptr<Module>> modules_;
    Buffers* buffers_ = nullptr; // the buffer and node modules, which other modules' services use
    Nodes* nodes_ = nullptr;
};

} // namespace loopd
