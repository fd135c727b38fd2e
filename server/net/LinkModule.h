#pragma once
// The Link module (SPEC 4.9): Ableton Link's commands and notifications.
//   /link 1|0           join or leave the Link session (--link at start); `/link` alone asks:
//                       /link.reply on peers bpm
//   /link_startstop 1|0 start/stop sync with the session (Link's opt-in)
//   /link_play 1|0      start or stop the session's transport (start/stop sync on)
//   /link_beat          /link_beat.reply hostMicros loopdBeat sessionBeat bpm sampleTime nowMicros:
//                       the last block's time on Link's clock (at the output), loopd's beat and
//                       the session's beat then; nowMicros is Link's clock as the reply is made
// `/notify` clients get `/link peers bpm` when either changes and `/link_play playing` when
// the session's transport starts or stops (start/stop sync on). /status.reply carries the
// peer count. The tempo source `link` (TempoCommands) makes loopd follow only.
// Offline renders never use Link: the commands answer /fail.
//
// Threads: control thread (the session's audio half runs on the audio thread: LinkSession).
#include <memory>

#include "server/control/Module.h"

namespace loopd {
class TempoCommands;
namespace net { class LinkSession; }

class LinkModule final : public Module {
public:
    LinkModule(Controller& c, TempoCommands& tempo);
    ~LinkModule() override;
    void poll() override;
    int pollWithinMs() const override { return session_ ? 2 : -1; } // peers and tempo come from Link's thread

    bool linkOn() const;
    // [control] From the tempo module: follow only (tempo source link) or lead too.
    bool setFollow(Msg& m, bool follow);

private:
    void hLink(Msg&); void hStartStop(Msg&); void hPlay(Msg&); void hBeat(Msg&);
    net::LinkSession& session();
    void refuseOffline() const;

    TempoCommands& tempo_;
    std::unique_ptr<net::LinkSession> session_; // made at the first /link 1; outlives the engine's use
    bool follow_ = false;
    bool lastPlaying_ = false;
};

} // namespace loopd
