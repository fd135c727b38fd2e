#pragma once
// loopd as a peer of an Ableton Link session (SPEC 4.9): the engine's clock shares tempo and
// beat phase with every Link peer on the network (Live, LinkHut, another loopd, phone apps).
//
// - Joining a session with peers, the clock takes its tempo and its phase (beat position modulo
//   the quantum = beats per bar) at once; alone, the session takes loopd's tempo and phase.
// - Afterwards, once a block: a tempo a peer set is taken (a step); a tempo loopd's own source
//   set (manual, movement, analysis, MIDI; a ramp, block by block) is committed to the session
//   unless the tempo source is `link` (follow only); the phase difference slides away within a
//   beat (TempoClock::nudge), or jumps when it is over a quarter beat — or over 1 ms in the
//   second after the peer count changed (sessions merged: the winner's phase is taken at once).
//   Alone (no peers) and leading, loopd is the session: nothing is taken from it (Link may read
//   back an older commit of loopd's own for half a second); loopd's tempo and beat are committed
//   (at most every 20 ms). With peers, a tempo read back that loopd itself committed in the last
//   two seconds is not taken for a peer's.
// - The session's time of a block's first sample is its period's host time plus the output
//   latency (the limiter's and half the driver's round trip), so two peers' beats agree where
//   they are heard. The host time is a straight line through the last 512 periods' (sample,
//   Link clock) points, as Link's HostTimeFilter fits it, but a period that comes right after
//   the one before (a driver catching up after a stall: the null driver renders late periods
//   back to back) adds no point: its "now" is not when its sound is due.
// - Start/stop sync (/link_startstop): the session's playing state is reported, and loopd may
//   start or stop it (/link_play).
//
// Threads: the Link object runs its own threads (discovery, network). period()/block() are
// [audio] (Link's realtime-safe calls only); the rest [control]. Callbacks from Link's thread
// only store atomics; the module (LinkModule) polls them.
#include <ableton/Link.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

#include "server/engine/ClockPeer.h"

namespace loopd::net {

class LinkSession final : public ClockPeer {
public:
    explicit LinkSession(double bpm);
    ~LinkSession() override;
    LinkSession(const LinkSession&) = delete;
    LinkSession& operator=(const LinkSession&) = delete;

    void enable(bool on);                 // [control] joins (or leaves) the network session
    bool enabled() const { return link_.isEnabled(); }
    void enableStartStopSync(bool on) { link_.enableStartStopSync(on); }
    bool startStopSync() const { return link_.isStartStopSyncEnabled(); }
    // [control] Start or stop the session's transport (start/stop sync must be on).
    void play(bool playing);

    // [any] As Link's thread last reported.
    int peers() const noexcept { return peers_.load(std::memory_order_relaxed); }
    double sessionBpm() const noexcept { return bpm_.load(std::memory_order_relaxed); }
    bool playing() const noexcept { return playing_.load(std::memory_order_relaxed); }
    // [any] A change since the last call (peers, tempo or playing state): the module notifies.
    bool changed() noexcept { return changed_.exchange(false, std::memory_order_acq_rel); }
    // [any] Link's clock now, in microseconds (the host time every peer on this machine shares).
    int64_t nowMicros() const { return link_.clock().micros().count(); }
    // [any] The last block's session figures, for /link_beat: the block's host time (µs, at
    // the output), loopd's beat then and the session's beat then (quantum = beats per bar).
    struct Snapshot { int64_t hostMicros = 0; double ours = 0.0, theirs = 0.0, bpm = 0.0; int64_t sample = 0; };
    Snapshot snapshot() const noexcept;

    void period(int64_t outStart, double sampleRate, int latencyFrames) noexcept override;
    ClockPeerAnswer block(const ClockPeerBlock& b) noexcept override;

private:
    ableton::Link link_;
    // [audio] The host-time line: points (sample, µs) relative to the first one kept.
    static constexpr int kPoints = 512;
    double pointX_[kPoints] = {}, pointY_[kPoints] = {};
    int points_ = 0, nextPoint_ = 0;
    int64_t originSample_ = 0;
    double originMicros_ = 0.0, lastNow_ = 0.0;
    int64_t lastOutStart_ = 0;
    bool havePeriod_ = false;
    std::atomic<int> peers_{0};
    std::atomic<double> bpm_{0.0};
    std::atomic<bool> playing_{false}, changed_{false};
    std::atomic<bool> fresh_{true};      // set on enable: the audio thread joins anew
    // [audio]
    bool joined_ = false;
    double lastBpm_ = 0.0;               // the session tempo as last seen or committed
    int lastPeers_ = 0;
    int64_t snapUntil_ = 0;              // phase errors jump (not slide) before this sample
    // loopd's own commits (at most one per 20 ms): their tempos read back are not a peer's.
    struct OwnCommit { double bpm = 0.0; int64_t sample = 0; };
    static constexpr int kOwn = 128;     // 2.56 s of a ramp's commits
    OwnCommit own_[kOwn] = {};
    int nextOwn_ = 0;
    int64_t lastCommitSample_ = INT64_MIN / 2;
    void commitOwn(ableton::Link::SessionState& st, const ClockPeerBlock& b) noexcept;
    bool ownEcho(double bpm, int64_t sample) const noexcept;
    int64_t periodStart_ = 0;
    double periodHostMicros_ = 0.0, sampleRate_ = 48000.0;
    // The last block's figures (a seqlock: written by the audio thread, read by any).
    std::atomic<uint32_t> snapSeq_{0};
    std::atomic<int64_t> snapHost_{0}, snapSample_{0};
    std::atomic<double> snapOurs_{0.0}, snapTheirs_{0.0}, snapBpm_{0.0};
};

} // namespace loopd::net
