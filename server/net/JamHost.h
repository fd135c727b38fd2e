#pragma once
// The interval jam's producer side on the network (SPEC 4.9; JamModule drives it): an HTTP
// server (cpp-httplib) with the session's state, the total track of every recent cycle as FLAC,
// and the musicians' takes.
//   GET  /jam/state[?musician=NAME]   JSON (JamState); naming a musician joins it (or says it is
//                                     still there: a musician unseen for 2 s loses its turns)
//   GET  /jam/mix/{cycle}             the total track as it plays in that cycle (audio/flac);
//                                     404 until it is ready, 410 when it is too old
//   POST /jam/take/{cycle}?musician=NAME   exactly loopFrames of audio (FLAC or WAV at the
//                                     session's rate, 1 or 2 channels), during or right after
//                                     the musician's turn: 202, else 4xx with the reason
// With a token, every request must carry it (`Authorization: Bearer TOKEN` or `?token=TOKEN`).
//
// Turns go round robin, in the order musicians joined, over those seen in the last 2 s. A take
// for cycle c is due before cycle c + 2 starts (it is mixed in at the first cycle boundary after
// it arrives); one that comes later is refused as late, one that never comes is reported missing.
//
// Threads: HTTP handlers on cpp-httplib's threads; the rest [control]. One mutex guards the state
// (no audio thread ever touches it).
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/engine/BufferData.h"
#include "server/net/JamState.h"

namespace httplib { class Server; }

namespace loopd::net {

class JamHost {
public:
    struct Config {
        std::string bind = "127.0.0.1";
        int port = 0;
        std::string token;                // "" = none
        JamState session;                 // bpm, beatsPerBar, bars, loopFrames, sampleRate
        double aliveSeconds = 2.0;        // a musician unseen this long loses its turns
    };
    // Listens at once (throws std::runtime_error naming the address when it cannot).
    explicit JamHost(Config config);
    ~JamHost();
    JamHost(const JamHost&) = delete;
    JamHost& operator=(const JamHost&) = delete;

    // What happened to a take (for /jam_take cycle name status).
    struct Event { int64_t cycle; std::string musician, status; };
    struct Take { int64_t cycle; std::string musician; std::unique_ptr<BufferData> audio; };

    // [control] Cycle `cycle` began: picks its turn (returned; "" when nobody is there) and
    // reports the take of cycle - 2 as missing when it never came.
    std::string beginCycle(int64_t cycle);
    // [control] The total track as it plays in `cycle` (kept for the last few cycles).
    void setMix(int64_t cycle, std::unique_ptr<BufferData> mix);
    // [control] Takes accepted and events since the last call.
    std::vector<Take> takeTakes();
    std::vector<Event> takeEvents();
    // [any]
    JamState state() const;
    int port() const { return port_; }
    // [any] Bytes sent and received over HTTP so far (mixes, takes, states).
    uint64_t bytesOut() const;
    uint64_t bytesIn() const;

private:
    struct Mix {
        std::unique_ptr<BufferData> audio;
        std::mutex encode;
        std::string flac; // encoded at the first request
    };
    struct Musician {
        std::string name;
        std::chrono::steady_clock::time_point seen;
    };
    bool authorised(const std::string& header, const std::string& param) const;
    bool alive(const Musician& m, std::chrono::steady_clock::time_point now) const;
    void event(int64_t cycle, const std::string& musician, const std::string& status); // [mutex_]

    Config config_;
    std::unique_ptr<httplib::Server> http_;
    std::thread thread_;
    int port_ = 0;
    mutable std::mutex mutex_;
    JamState session_;                                  // [mutex_] cycle, turn, musicians
    std::vector<Musician> musicians_;                   // [mutex_] in the order they joined
    size_t lastPick_ = static_cast<size_t>(-1);         // [mutex_] index of the last turn given
    std::map<int64_t, std::string> turns_;              // [mutex_] cycle → musician ("" none)
    std::map<int64_t, bool> taken_;                     // [mutex_] cycles whose take came
    std::map<int64_t, std::shared_ptr<Mix>> mixes_;     // [mutex_]
    std::vector<Take> takes_;                           // [mutex_]
    std::vector<Event> events_;                         // [mutex_]
    uint64_t bytesOut_ = 0, bytesIn_ = 0;               // [mutex_]
};

} // namespace loopd::net
