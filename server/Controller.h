#pragma once
// The control side of the server: parses OSC packets and bundles, validates every command
// (a /fail with a reason for anything wrong), turns them into engine commands or worker jobs,
// and turns the engine's replies into OSC. Owns the client table and /notify registrations.
//
// Threads: handlePacket() and pollReplies() on the control thread; worker jobs it posts run on
// the worker thread; send() may be called from the control, worker and recorder threads.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <osc/OscReceivedElements.h>

#include "osc/Message.h"
#include "osc/Transport.h"
#include "server/Engine.h"
#include "server/PathPolicy.h"
#include "server/Recorder.h"
#include "server/Worker.h"

namespace loopd {

struct ControllerOptions {
    double bpm = 120.0;
    int beatsPerBar = 4;
    std::string driverName = "none";
    int periodFrames = 0;
    int64_t maxBufferSamples = int64_t(512) << 20; // floats per buffer (2 GiB)
    bool offline = false;
};

class Controller {
public:
    using Sender = std::function<bool(const osc::Endpoint&, const char*, size_t)>;

    Controller(Engine& engine, Worker& worker, Recorder& recorder, const PathPolicy& paths,
               ControllerOptions options);
    ~Controller();
    Controller(const Controller&) = delete;
    Controller& operator=(const Controller&) = delete;

    void setSender(Sender sender) { sender_ = std::move(sender); }     // [control] before use
    void setDriverInfo(const std::string& name, int periodFrames);      // [control]

    // [control] One OSC packet (message or bundle) from `from`.
    void handlePacket(const char* data, size_t size, const osc::Endpoint& from);
    // [control] Deliver the engine's replies; call every few milliseconds.
    void pollReplies();
    // [control] Stop every recording and wait until the files are closed (shutdown, end of nrt).
    void stopRecordings();

    bool quitRequested() const noexcept { return quit_.load(); }
    uint64_t failCount() const noexcept { return fails_.load(); }

    // [any] Send to a registered client (thread-safe).
    void send(uint16_t client, const osc::MessageBuilder& m);

private:
    struct Msg {
        const char* address;
        osc::ArgReader& args;
        uint64_t timetag;
        uint16_t client;
    };
    using Handler = void (Controller::*)(Msg&);

    void handleBundle(const ::osc::ReceivedBundle& b, uint16_t client, int depth);
    void handleMessage(const ::osc::ReceivedMessage& m, uint64_t timetag, uint16_t client);
    uint16_t clientFor(const osc::Endpoint& e);
    void fail(uint16_t client, const char* address, const std::string& reason);
    void done(uint16_t client, const char* address, std::initializer_list<int32_t> ids = {});
    bool push(Msg& m, CommandBody&& body);
    bool pushFromWorker(uint16_t client, const char* address, uint64_t timetag, CommandBody&& body);
    std::string failReason(const reply::Fail& f) const;
    void broadcast(const osc::MessageBuilder& m);
    int32_t bufnum(Msg& m);
    std::string checkedPath(Msg& m, const std::string& path, bool forWriting);
    void applyParams(Msg& m, Node& node);

    // Handlers.
    void hStatus(Msg&); void hVersion(Msg&); void hNotify(Msg&); void hDumpOsc(Msg&); void hQuit(Msg&);
    void hSync(Msg&); void hSNew(Msg&); void hGNew(Msg&); void hNSet(Msg&); void hNRamp(Msg&);
    void hNFree(Msg&); void hNRun(Msg&); void hNBefore(Msg&); void hNAfter(Msg&); void hNQuery(Msg&);
    void hGFreeAll(Msg&); void hGQueryTree(Msg&);
    void hBAlloc(Msg&); void hBAllocRead(Msg&); void hBRead(Msg&); void hBWrite(Msg&); void hBFree(Msg&);
    void hBZero(Msg&); void hBQuery(Msg&);
    void hRecStart(Msg&); void hRecStop(Msg&);
    void move(Msg&, bool after);

    // Worker-side (run on the worker thread).
    void swapBuffer(uint16_t client, const char* address, int32_t bufnum, std::unique_ptr<BufferData> data);

    Engine& engine_;
    Worker& worker_;
    Recorder& recorder_;
    const PathPolicy& paths_;
    ControllerOptions options_;
    Sender sender_;
    ProcessContext paramCtx_; // engine constants for validating parameters on this thread
    std::unordered_map<std::string, std::pair<const char*, Handler>> handlers_;

    std::mutex clientsMutex_;
    std::vector<osc::Endpoint> clients_;
    size_t nextEvict_ = 0;
    std::vector<uint16_t> notify_;
    bool dumpOsc_ = false;
    std::atomic<bool> quit_{false};
    std::atomic<uint64_t> fails_{0};
    int32_t nextAutoId_ = 1000;

    std::vector<BufferData*> workerBuffers_; // the worker's view of the buffer table
    int64_t rateSampleTime_ = 0;
    std::chrono::steady_clock::time_point rateWallTime_;
    double actualRate_ = 0.0;
};

} // namespace loopd
