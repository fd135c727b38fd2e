#pragma once
// The interval jam's musician side on the network (SPEC 4.9; JamModule drives it): a thread that
// polls the producer's state, fetches each cycle's mix and posts this server's takes. Nothing
// here touches the engine: what it learns goes to the module as events.
//
// Threads: run() on its own thread; the public methods [control].
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/engine/BufferData.h"
#include "server/net/JamState.h"

namespace loopd::net {

class JamGuest {
public:
    struct Config {
        std::string url;          // http://host:port
        std::string name;
        std::string token;        // "" = none
        double pollSeconds = 0.1;
        double unreachableSeconds = 2.0; // no answer this long: reported
    };
    explicit JamGuest(Config config);
    ~JamGuest();
    JamGuest(const JamGuest&) = delete;
    JamGuest& operator=(const JamGuest&) = delete;

    struct Event {
        enum class Kind { State, Mix, Posted, Problem } kind;
        JamState state;                    // State
        int64_t cycle = -1;                // Mix, Posted
        std::unique_ptr<BufferData> audio; // Mix
        std::string status;                // Posted ("posted" or why not), Problem
    };
    std::vector<Event> takeEvents();
    // Post `take` as this musician's take for `cycle` (encoded and sent on the thread).
    void post(int64_t cycle, std::unique_ptr<BufferData> take);
    uint64_t bytesIn() const;
    uint64_t bytesOut() const;

private:
    void run();
    void emit(Event e);

    Config config_;
    std::thread thread_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;                                                // [mutex_]
    std::vector<Event> events_;                                        // [mutex_]
    std::deque<std::pair<int64_t, std::unique_ptr<BufferData>>> posts_; // [mutex_]
    uint64_t bytesIn_ = 0, bytesOut_ = 0;                              // [mutex_]
};

} // namespace loopd::net
