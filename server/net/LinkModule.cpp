// The Link module (LinkModule.h).
#include "server/net/LinkModule.h"

#include <spdlog/spdlog.h>

#include "server/net/LinkSession.h"
#include "server/tempo/TempoCommands.h"

namespace loopd {

LinkModule::LinkModule(Controller& c, TempoCommands& tempo) : Module(c), tempo_(tempo) {
    on("/link", &LinkModule::hLink);
    on("/link_startstop", &LinkModule::hStartStop);
    on("/link_play", &LinkModule::hPlay);
    on("/link_beat", &LinkModule::hBeat);
    tempo_.setLink(this);
}

LinkModule::~LinkModule() {
    // (The tempo module is not told: the Controller's modules go together, the tempo module
    // first.) The engine may still hold the session: it is stopped before the modules go (Server), so
    // the session is only left, never used after this.
    if (session_) session_->enable(false);
}

bool LinkModule::linkOn() const { return session_ && session_->enabled(); }

void LinkModule::refuseOffline() const {
    if (options_.offline || options_.replay) throw osc::ArgError("an offline render never uses Link, nor a replay (its clock is the render's own)");
}

net::LinkSession& LinkModule::session() {
    if (!session_) session_ = std::make_unique<net::LinkSession>(engine_.stats().bpm);
    return *session_;
}

void LinkModule::hLink(Msg& m) {
    if (m.args.atEnd()) {
        send(m.client, osc::MessageBuilder("/link.reply").i(linkOn() ? 1 : 0).i(session_ ? session_->peers() : 0)
                           .f(static_cast<float>(session_ ? session_->sessionBpm() : engine_.stats().bpm)));
        return;
    }
    const int32_t flag = m.args.int32("on flag");
    m.args.expectEnd();
    refuseOffline();
    if (flag != 0) {
        net::LinkSession& s = session();
        if (!push(m, cmd::ClockPeerOn{&s, follow_})) return;
        s.enable(true);
        spdlog::info("Ableton Link on (quantum: beats per bar)");
    } else if (session_) {
        if (!push(m, cmd::ClockPeerOn{nullptr, false})) return;
        session_->enable(false);
        engine_.setClockPeers(0);
        if (follow_) tempo_.linkOff();
        follow_ = false;
        spdlog::info("Ableton Link off");
    }
    done(m.client, m.address);
}

bool LinkModule::setFollow(Msg& m, bool follow) {
    if (!linkOn()) throw osc::ArgError("Link is off (/link 1 or --link first)");
    if (!push(m, cmd::ClockPeerOn{session_.get(), follow})) return false;
    follow_ = follow;
    return true;
}

void LinkModule::hStartStop(Msg& m) {
    const int32_t flag = m.args.int32("on flag");
    m.args.expectEnd();
    refuseOffline();
    session().enableStartStopSync(flag != 0);
    done(m.client, m.address);
}

void LinkModule::hPlay(Msg& m) {
    const int32_t flag = m.args.int32("playing flag");
    m.args.expectEnd();
    refuseOffline();
    if (!linkOn()) throw osc::ArgError("Link is off (/link 1 first)");
    if (!session_->startStopSync()) throw osc::ArgError("start/stop sync is off (/link_startstop 1 first)");
    session_->play(flag != 0);
    done(m.client, m.address);
}

void LinkModule::hBeat(Msg& m) {
    m.args.expectEnd();
    if (!linkOn()) throw osc::ArgError("Link is off (/link 1 first)");
    const net::LinkSession::Snapshot s = session_->snapshot();
    send(m.client, osc::MessageBuilder("/link_beat.reply").d(static_cast<double>(s.hostMicros)).d(s.ours).d(s.theirs)
                       .d(s.bpm).d(static_cast<double>(s.sample)).d(static_cast<double>(session_->nowMicros())));
}

void LinkModule::poll() {
    if (!session_ || !session_->changed()) return;
    const int peers = session_->peers();
    engine_.setClockPeers(linkOn() ? peers : 0);
    if (!linkOn()) return;
    broadcast(osc::MessageBuilder("/link").i(peers).f(static_cast<float>(session_->sessionBpm())));
    const bool playing = session_->playing();
    if (session_->startStopSync() && playing != lastPlaying_) broadcast(osc::MessageBuilder("/link_play").i(playing ? 1 : 0));
    lastPlaying_ = playing;
}

} // namespace loopd
