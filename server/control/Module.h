#pragma once
// A module of the OSC front end: one namespace of addresses (nodes, buffers, tempo, Crowdstream,
// SooperLooper) with the state it alone needs. The Controller is the dispatcher and the server
// itself (clients, /notify, /status, /sync, recording, completion messages); a module registers its addresses with `on` and is told of
// the few engine events it follows through the hooks below. What a module may ask of the
// Controller is the protected part of this class: nothing else of the Controller is visible to it.
//
// Threads: every hook and handler runs on the control thread. `send`, `fail`, `done`,
// `pushFromWorker` and `swapBuffer` may also be called from the worker thread (jobs a module
// posts with `worker_.post`).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <osc/OscReceivedElements.h>

#include "osc/Message.h"
#include "osc/Transport.h"
#include "server/control/ControllerOptions.h"
#include "server/engine/Commands.h"
#include "server/engine/Engine.h"
#include "server/io/Worker.h"
#include "server/nodes/Registry.h"

namespace loopd {

class Controller;
class Node;
class MemoryBudget;
class StretchWorker;
struct BufferData;
struct LoadOptions;
struct ProcessContext;

// One message being handled: its address (the registered one, or the whole address for a
// prefix route such as /sl/...), arguments, timetag (0 = now), client, and the completion
// message waiting for it (0: none).
// A number as a reply or log line shows it (shortest form: 0.5, 1e-05).
std::string formatNumber(float v);

struct Msg {
    const char* address;
    osc::ArgReader& args;
    uint64_t timetag;
    uint16_t client;
    uint32_t completion = 0;
};

// [control] Runs f(Msg&) with a message of no arguments from `client`: what a module does by
// itself, outside a handler, with the services that take a Msg (push, the loop table's calls).
template <class F>
auto withMsg(const char* address, uint16_t client, F f) {
    const std::vector<char> bytes = osc::MessageBuilder(address).bytes();
    ::osc::ReceivedPacket packet(bytes.data(), static_cast<::osc::osc_bundle_element_size_t>(bytes.size()));
    ::osc::ReceivedMessage message(packet);
    osc::ArgReader args(message);
    Msg m{address, args, 0, client};
    return f(m);
}

class Module {
public:
    explicit Module(Controller& controller);
    virtual ~Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    // [control] Engine events a module may follow. The Controller has already done its own part
    // (the /beat and /n_end notifications) when these run.
    virtual void onBeat(const reply::Beat&) {}
    virtual void onNodeEnded(int32_t /*id*/) {}
    // A node a client made with /s_new, now queued for the engine (it owns it from here on).
    virtual void onNodeCreated(Msg&, Node&) {}
    // A node the engine gave back, before it is deleted.
    virtual void onNodeDisposed(const Node&) {}
    // Something the audio thread handed back that this module lent it; true: taken.
    virtual bool takeBack(Released&) { return false; }
    // Every pass of the control loop: after each packet, reply, wake-up, and at least every
    // pollWithinMs() (the control thread sleeps in between; see Controller::idleTimeoutMs).
    virtual void poll() {}
    // How soon poll() must run again even when nothing wakes the control thread: -1, never (the
    // module's events wake it: Engine::wakeControl); else milliseconds.
    virtual int pollWithinMs() const { return -1; }
    // A full tree snapshot (TreeSnapshot::full) this module asked for; true: taken.
    virtual bool takeSnapshot(std::unique_ptr<TreeSnapshot>&) { return false; }

protected:
    // Registration: `address` runs `handler` on this module (an exact address, or with
    // onPrefix every address that starts with `prefix`).
    template <class M>
    void on(const char* address, void (M::*handler)(Msg&)) {
        route(address, false, [this, handler](Msg& m) { (static_cast<M*>(this)->*handler)(m); });
    }
    template <class M>
    void onPrefix(const char* prefix, void (M::*handler)(Msg&)) {
        route(prefix, true, [this, handler](Msg& m) { (static_cast<M*>(this)->*handler)(m); });
    }

    // Commands to the engine (false: not queued, the client has its /fail).
    bool push(Msg& m, CommandBody&& body);
    bool pushFromWorker(uint16_t client, const char* address, uint64_t timetag, CommandBody&& body);
    // Asynchronous commands (scsynth's completion messages, Msg::completion): [any] the command
    // finished (its completion message runs on the control thread, then /done address id),
    // failed (/fail, the completion message is dropped), or never started.
    void finishAsync(uint16_t client, const char* address, int32_t id, uint32_t completion);
    void failAsync(uint16_t client, const char* address, const std::string& reason, uint32_t completion);
    void dropCompletion(uint32_t completion);
    // [control] A node a client made, queued for the engine: every module hears of it.
    void nodeCreated(Msg& m, Node& node);
    // Replies.
    void send(uint16_t client, const osc::MessageBuilder& m);
    void sendTo(const osc::Endpoint& to, const osc::MessageBuilder& m); // an address no client has
    void broadcast(const osc::MessageBuilder& m);                        // every /notify client
    // [control] Handle `m` as if a client had sent it (no client: its /fail is logged only).
    void runInternal(const osc::MessageBuilder& m);
    void fail(uint16_t client, const char* address, const std::string& reason);
    void done(uint16_t client, const char* address, std::initializer_list<int32_t> ids = {});
    // Arguments and nodes as the native commands read and build them.
    int32_t bufnum(Msg& m);
    std::string checkedPath(Msg& m, const std::string& path, bool forWriting);
    std::string checkedDirectory(Msg& m, const std::string& path, bool forWriting);
    LoadOptions loadOptions(const std::string& what);
    void applyParams(Msg& m, Node& node);
    NodeSetup nodeSetup();
    // Buffers: load a file into buffer `b` on the worker (/done `address` b when swapped in);
    // whether `b` is loaded or loading; free every loaded buffer `which` picks, then /done.
    // `address` must outlive the command (a string literal).
    void loadBuffer(Msg& m, int32_t b, const std::string& path, const char* address);
    void loadBufferWith(Msg& m, int32_t b, const char* address, std::function<std::unique_ptr<BufferData>()> make);
    bool bufferKnown(int32_t b);
    // [any] Why `path` may not be read under --root ("": it may): for paths found on the worker.
    std::string pathProblem(const std::string& path) const;
    void freeBuffers(uint16_t client, const char* address, std::function<bool(int32_t)> which);
    // [worker] Put `data` into buffer `b` (the worker's view of the table follows).
    void swapBuffer(uint16_t client, const char* address, int32_t b, std::unique_ptr<BufferData> data);

    // An argument of seconds (0 .. one day), or ArgError naming `what`.
    static double seconds(osc::ArgReader& args, const char* what);

    MemoryBudget& budget();
    StretchWorker* stretchWorker();
    const std::string& hostUrl() const;   // the URL the server answers at (osc.udp://host:port/)
    float defaultStretch() const;         // --stretch-method as a `stretch` value

    Controller& controller_;
    Engine& engine_;
    Worker& worker_;
    const ControllerOptions& options_;
    const ProcessContext& paramCtx_;

private:
    void route(const char* address, bool prefix, std::function<void(Msg&)> handler);
};

} // namespace loopd
