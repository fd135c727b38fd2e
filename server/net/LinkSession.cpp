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
    Snapshot s;
    for (;;) {
        const uint32_t before = snapSeq_.load(std::memory_order_acquire);
        if (before & 1u) continue;
        s.hostMicros = snapHost_.load(std::memory_order_relaxed);
        s.sample = snapSample_.load(std::memory_order_relaxed);
        s.ours = snapOurs_.load(std::memory_order_relaxed);
        s.theirs = snapTheirs_.load(std::memory_order_relaxed);
        s.bpm = snapBpm_.load(std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (snapSeq_.load(std::memory_order_relaxed) == before) return s;
    }
}

void LinkSession::period(int64_t outStart, double sampleRate, int latencyFrames) noexcept {
    // HostTimeFilter: a straight line through the last 512 periods' (sample, now) points; its
    // storage is reserved at construction (no allocation here).
    const auto host = filter_.sampleTimeToHostTime(static_cast<double>(outStart));
    periodStart_ = outStart;
    sampleRate_ = sampleRate;
    periodHostMicros_ = static_cast<double>(host.count()) + 1e6 * latencyFrames / sampleRate;
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
            link_.commitAudioSessionState(st);
            lastBpm_ = b.bpm;
        } else {
            // Joining: the session's tempo and phase, at once.
            a.bpm = st.tempo();
            a.setPosition = true;
            a.position = b.beats + wrapPhase(st.phaseAtTime(host, q) - std::fmod(b.beats, q), q);
            lastBpm_ = a.bpm;
        }
    } else {
        const double session = st.tempo();
        if (std::fabs(session - lastBpm_) > 1e-6) {
            a.bpm = session; // a peer changed it
            lastBpm_ = session;
        } else if (b.lead && std::fabs(b.bpm - lastBpm_) > 1e-6) {
            st.setTempo(b.bpm, host); // loopd changed it: the beat at this time stays
            link_.commitAudioSessionState(st);
            lastBpm_ = b.bpm;
        }
        const double error = wrapPhase(st.phaseAtTime(host, q) - std::fmod(b.beats, q), q);
        if (std::fabs(error) > 0.25) {
            a.setPosition = true;
            a.position = b.beats + error;
        } else {
            a.phaseError = error;
        }
    }
    const uint32_t seq = snapSeq_.load(std::memory_order_relaxed);
    snapSeq_.store(seq + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    snapHost_.store(host.count(), std::memory_order_relaxed);
    snapSample_.store(b.sample, std::memory_order_relaxed);
    snapOurs_.store(a.setPosition ? a.position : b.beats, std::memory_order_relaxed);
    snapTheirs_.store(st.beatAtTime(host, q), std::memory_order_relaxed);
    snapBpm_.store(a.bpm > 0.0 ? a.bpm : b.bpm, std::memory_order_relaxed);
    snapSeq_.store(seq + 2, std::memory_order_release);
    return a;
}

} // namespace loopd::net
