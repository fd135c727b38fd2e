#pragma once
// Remembers how loopd's JACK ports are connected, so that after the JACK server went away and
// came back (a crash, a restart by the session manager, a USB interface unplugged) loopd's new
// ports are connected exactly as before.
//
// It holds a monitor client of its own on the JACK server (no ports, no process callback: it
// takes no part in the audio graph). JACK tells it of every connection change and of the
// server's shutdown on JACK's notification thread; those callbacks only raise flags. Everything
// else runs on the control thread.
//
// Threads: [control] for every method.
#include <atomic>
#include <cstddef>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

typedef struct _jack_client jack_client_t;

namespace loopd {

class JackPortMemory {
public:
    // `clientName`: the name loopd's audio client asks JACK for (JACK answers "name-01" when it
    // is taken; run several loopds with distinct --jack-name values).
    explicit JackPortMemory(std::string clientName = "loopd") : name_(std::move(clientName)) {}
    ~JackPortMemory();
    JackPortMemory(const JackPortMemory&) = delete;
    JackPortMemory& operator=(const JackPortMemory&) = delete;

    // [control] Joins the running JACK server (never starts one). False when none runs.
    bool attach();
    // [control] Leaves it (after a shutdown, or before loopd exits).
    void detach();
    bool attached() const noexcept { return client_ != nullptr; }
    // [any] The server shut down (or kicked the monitor out) since attach().
    bool serverGone() const noexcept { return gone_.load(std::memory_order_acquire); }

    // [control] Call every few milliseconds while the device runs: takes a fresh copy of loopd's
    // connections when they changed.
    void poll();
    // [control] The device was found lost now: what restore() brings back is fixed from here.
    void markLost();
    // [control] Connects loopd's ports as they were `settleSeconds` before the loss (changes in
    // the last moments before it may be the server tearing the graph down), and disconnects
    // what was not connected then. Returns the connections made; -1 when nothing was remembered.
    int restore(double settleSeconds = 0.5);

    using Pairs = std::vector<std::pair<std::string, std::string>>;
    // The connections remembered last: (loopd's port, without its client name; the peer port).
    Pairs connections() const { return history_.empty() ? Pairs{} : history_.back().pairs; }

private:
    struct Snapshot {
        std::chrono::steady_clock::time_point at;
        Pairs pairs;
        bool valid = false;
    };
    // loopd's own JACK client name (RtAudio's; JACK may have renamed it "loopd-01").
    std::string ownClient() const;
    Snapshot take() const;

    std::string name_;
    jack_client_t* client_ = nullptr;
    std::atomic<bool> gone_{false};
    std::atomic<bool> dirty_{false};
    std::vector<Snapshot> history_;   // newest last, at most kHistory
    static constexpr size_t kHistory = 16;
    std::chrono::steady_clock::time_point lostAt_{};
    bool lost_ = false;
};

} // namespace loopd
