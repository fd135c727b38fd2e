#pragma once
// The interval jam module (SPEC 4.9; looper-jam's producer–musician model, NINJAM's "everyone
// hears the previous interval"): loop audio moves between loopd servers over HTTP.
//   /jam_host port bars   this server is the producer: a new SooperLooper loop (the total track,
//                         `bars` bars at the clock's tempo and meter, starting at the next bar)
//                         and an HTTP server on --jam-bind (127.0.0.1) port (0: any free one);
//                         /done /jam_host port loopIndex
//   /jam_join url name    this server is musician `name` of the producer at url (http://host:port):
//                         it takes the session's tempo and meter, plays each cycle's mix in a new
//                         loop on its own clock (the first from its next bar, each next one from
//                         the loop's next wrap), and on its turn records one cycle of its input
//                         (the loop's cycle in progress, latency compensated, from the capture
//                         ring) and posts it; /done /jam_join loopIndex once its loop exists
//   /jam_leave            stop hosting or playing (the loop stays)
//   /jam                  /jam.reply role(off|host|guest) cycle turn loopIndex bytesIn bytesOut
// The producer overdubs each take into the total track at the next cycle boundary (one undo step:
// /sl/N/hit undo takes a bad take out). `/notify` clients get `/jam_turn cycle name` when a cycle
// begins and `/jam_take cycle name status` for every take (accepted, mixed, posted, missing,
// late, refused with the reason). The audio never waits for the network: HTTP runs on its own
// threads, loop content moves through the looper's load, mix, take and save jobs.
//
// Threads: control thread (JamHost's and JamGuest's threads do the network work).
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "server/control/Module.h"
#include "server/net/JamState.h"

namespace loopd {
class SooperLooper;
class Looper;
namespace net { class JamHost; class JamGuest; }

class JamModule final : public Module {
public:
    JamModule(Controller& c, SooperLooper& sl);
    ~JamModule() override;
    void poll() override;
    int pollWithinMs() const override { return host_ || guest_ ? 2 : -1; } // the jam's threads queue for poll()
    bool takeBack(Released& x) override;

private:
    void hHost(Msg&); void hJoin(Msg&); void hLeave(Msg&); void hQuery(Msg&);
    void pollHost();
    void pollGuest();
    void stop();
    void notifyTake(int64_t cycle, const std::string& name, const std::string& status);
    // A loop buffer of one cycle, 2 channels, from `audio` (1 or 2 channels; cut or padded).
    std::unique_ptr<BufferData> cycleBuffer(const BufferData* audio) const;
    bool pushUnit(uint16_t client, CommandBody&& body);
    int loopIndex() const;

    SooperLooper& sl_;
    std::unique_ptr<net::JamHost> host_;
    std::unique_ptr<net::JamGuest> guest_;
    net::JamState session_;       // what this server plays (host: its own; guest: the producer's)
    int32_t node_ = -1;           // the jam's loop
    int64_t wrapsBase_ = 0;       // the loop's wraps before the jam's first cycle
    int64_t cycle_ = -1;          // host: the cycle playing
    std::string name_;            // guest: this musician
    uint16_t client_ = kNoClient; // who asked (its /fail)
    bool joined_ = false;         // guest: the first state came and the loop exists
    bool firstMix_ = true;        // guest: the next mix is the first (starts at a bar)
    int64_t takeCycle_ = -1;      // guest: the last cycle a take was started for
    // Loans to the looper, recognised when they come back.
    BufferData* saveLent_ = nullptr; int64_t saveCycle_ = -1;   // host: the mix of a cycle
    BufferData* takeLent_ = nullptr; int64_t takeLentCycle_ = -1; // guest: a take
    // Host: accepted takes waiting for the looper; the one pushed is mixed at cycle mixAt_.
    // `cameIn`: the cycle playing here when it arrived; `before`: seconds from its arrival to the
    // end of that cycle (the boundary that mixes it in).
    struct Pending { int64_t cycle; std::string musician; std::unique_ptr<BufferData> audio; int64_t cameIn = 0; double before = 0; };
    std::deque<Pending> waiting_;
    bool mixPushed_ = false;      // a take is with the looper, not mixed in yet
    int64_t mixesSeen_ = 0;       // the looper's mix count when last looked
    int64_t mixedCycle_ = -1; std::string mixedBy_; int64_t mixedCameIn_ = 0; double mixedBefore_ = 0;
};

} // namespace loopd
