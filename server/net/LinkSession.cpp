// Ableton Link peer (LinkSession.h).
#include "server/net/LinkSession.h"

#include <cmath>

namespace loopd::net {

namespace {
// x folded into [-q/2, q/2).
double wrapPhase(double x, double q) noexcept {
    double r = std::fmod(x + q / 2.0, q);
    if (r < 0.0) r += q;
    return r - q / 2.0;
}
} // namespace

LinkSession::LinkSession(double bpm) : link_(bpm) {
    bpm_.store(bpm);
    // Link's thread: store and flag only.
    link_.setNumPeersCallback([this](std::size_t n) {
        peers_.store(static_cast<int>(n), std::memory_order_relaxed);
        changed_.store(true, std::memory_order_release);
    });
    link_.setTempoCallback([this](double tempo) {
        bpm_.store(tempo, std::memory_order_relaxed);
        changed_.store(true, std::memory_order_release);
    });
    link_.setStartStopCallback([this](bool playing) {
        playing_.store(playing, std::memory_order_relaxed);
        changed_.store(true, std::memory_order_release);
    });
}

LinkSession::~LinkSession() { link_.enable(false); }

void LinkSession::enable(bool on) {
    if (on && !link_.isEnabled()) fresh_.store(true, std::memory_order_release);
    link_.enable(on);
}

void LinkSession::play(bool playing) {
    auto st = link_.captureAppSessionState();
    st.setIsPlaying(playing, link_.clock().micros());
    link_.commitAppSessionState(st);
}

LinkSession::Snapshot LinkSession::snapshot() const noexcept {
    // A sequence lock: odd while the audio thread writes. Every access is sequentially
    // consistent (no fences: ThreadSanitizer does not model them).
    Snapshot s;
    for (;;) {
        const uint32_t before = snapSeq_.load();
        if (before & 1u) continue;
        s.hostMicros = snapHost_.load();
        s.sample = snapSample_.load();
        s.ours = snapOurs_.load();
        s.theirs = snapTheirs_.load();
        s.bpm = snapBpm_.load();
        if (snapSeq_.load() == before) return s;
    }
}

void LinkSession::period(int64_t outStart, double sampleRate, int latencyFrames) noexcept {
    const auto now = static_cast<double>(link_.clock().micros().count());
    if (!havePeriod_ || outStart < lastOutStart_) { // the first period, or a new timeline
        points_ = nextPoint_ = 0;
        originSample_ = outStart;
        originMicros_ = now;
    }
    // A period that follows the last one much sooner than the last one lasted is a catch-up.
    const double lastLasted = 1e6 * static_cast<double>(outStart - lastOutStart_) / sampleRate;
    if (!havePeriod_ || now - lastNow_ >= 0.5 * lastLasted) {
        pointX_[nextPoint_] = static_cast<double>(outStart - originSample_);
        pointY_[nextPoint_] = now - originMicros_;
        nextPoint_ = (nextPoint_ + 1) % kPoints;
        if (points_ < kPoints) ++points_;
    }
    havePeriod_ = true;
    lastNow_ = now;
    lastOutStart_ = outStart;
    double host = now;
    if (points_ >= 8) {
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (int i = 0; i < points_; ++i) {
            sx += pointX_[i]; sy += pointY_[i]; sxx += pointX_[i] * pointX_[i]; sxy += pointX_[i] * pointY_[i];
        }
        const double n = points_, den = n * sxx - sx * sx;
        if (den > 0.0) {
            const double slope = (n * sxy - sx * sy) / den, intercept = (sy - slope * sx) / n;
            host = originMicros_ + intercept + slope * static_cast<double>(outStart - originSample_);
        }
    }
    periodStart_ = outStart;
    sampleRate_ = sampleRate;
    periodHostMicros_ = host + 1e6 * latencyFrames / sampleRate;
}

void LinkSession::commitOwn(ableton::Link::SessionState& st, const ClockPeerBlock& b) noexcept {
    link_.commitAudioSessionState(st);
    lastBpm_ = b.bpm;
    lastCommitSample_ = b.sample;
    own_[nextOwn_] = {b.bpm, b.sample};
    nextOwn_ = (nextOwn_ + 1) % kOwn;
}

bool LinkSession::ownEcho(double bpm, int64_t sample) const noexcept {
    // Link serves the audio thread its own commits back, and after a second without one, what
    // its network thread last applied: that may be an older commit of a ramp for up to half a
    // second (its fallback period). Such a tempo is not a peer's.
    const auto window = static_cast<int64_t>(2.0 * sampleRate_);
    for (const OwnCommit& c : own_)
        if (c.bpm > 0.0 && sample - c.sample < window && std::fabs(c.bpm - bpm) < 1e-9) return true;
    return false;
}

ClockPeerAnswer LinkSession::block(const ClockPeerBlock& b) noexcept {
    ClockPeerAnswer a;
    const double hostD = periodHostMicros_ + 1e6 * static_cast<double>(b.sample - periodStart_) / sampleRate_;
    const std::chrono::microseconds host(std::llround(hostD));
    const auto q = static_cast<double>(b.quantum);
    auto st = link_.captureAudioSessionState();
    if (fresh_.exchange(false, std::memory_order_acq_rel)) joined_ = false;
    if (!joined_) {
        joined_ = true;
        if (peers_.load(std::memory_order_relaxed) == 0) {
            // Alone: the session starts from loopd's clock.
            st.setTempo(b.bpm, host);
            st.requestBeatAtTime(b.beats, host, q);
            commitOwn(st, b);
            lastPeers_ = 0;
        } else {
            // Joining: the session's tempo and phase, at once.
            a.bpm = st.tempo();
            a.setPosition = true;
            a.position = b.beats + wrapPhase(st.phaseAtTime(host, q) - std::fmod(b.beats, q), q);
            lastBpm_ = a.bpm;
        }
    } else if (peers_.load(std::memory_order_relaxed) == 0 && b.lead) {
        // Alone and leading: loopd is the session. What the session reads back is loopd's own
        // last commits (Link may serve an older one of them for a while: it is never a peer's),
        // so nothing is taken; loopd's tempo and, when they drifted over 1 ms apart, its beat
        // are committed instead.
        lastPeers_ = 0;
        const bool due = b.sample - lastCommitSample_ >= static_cast<int64_t>(sampleRate_ / 50.0);
        const double error = wrapPhase(st.phaseAtTime(host, q) - std::fmod(b.beats, q), q);
        bool commit = false;
        if (due && std::fabs(b.bpm - lastBpm_) > 1e-6) {
            st.setTempo(b.bpm, host);
            commit = true;
        }
        if (due && std::fabs(error) > 0.001 * b.bpm / 60.0) {
            st.forceBeatAtTime(b.beats, host, q);
            commit = true;
        }
        if (commit) commitOwn(st, b);
    } else {
        const double session = st.tempo();
        if (std::fabs(session - lastBpm_) > 1e-6 && !ownEcho(session, b.sample)) {
            a.bpm = session; // a peer changed it
            lastBpm_ = session;
        } else if (b.lead && std::fabs(b.bpm - lastBpm_) > 1e-6 &&
                   b.sample - lastCommitSample_ >= static_cast<int64_t>(sampleRate_ / 50.0)) {
            st.setTempo(b.bpm, host); // loopd changed it: the beat at this time stays
            commitOwn(st, b);
        }
        // Peers came or went: a session met another and one timeline won. For a second after,
        // the phase is taken at once (the winner's timeline may be anywhere in the bar).
        const int peers = peers_.load(std::memory_order_relaxed);
        if (peers != lastPeers_) snapUntil_ = b.sample + static_cast<int64_t>(sampleRate_);
        lastPeers_ = peers;
        const double error = wrapPhase(st.phaseAtTime(host, q) - std::fmod(b.beats, q), q);
        const double snap = b.sample < snapUntil_ ? 0.001 * b.bpm / 60.0 : 0.25; // 1 ms, or a quarter beat
        if (std::fabs(error) > snap) {
            a.setPosition = true;
            a.position = b.beats + error;
        } else {
            a.phaseError = error;
        }
    }
    const uint32_t seq = snapSeq_.load(std::memory_order_relaxed);
    snapSeq_.store(seq + 1);
    snapHost_.store(host.count());
    snapSample_.store(b.sample);
    snapOurs_.store(a.setPosition ? a.position : b.beats);
    snapTheirs_.store(st.beatAtTime(host, q));
    snapBpm_.store(a.bpm > 0.0 ? a.bpm : b.bpm);
    snapSeq_.store(seq + 2);
    return a;
}

} // namespace loopd::net
