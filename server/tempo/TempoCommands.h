#pragma once
// The tempo module: the commands that set the one tempo clock every follower plays to —
// /tempo (step or ramp), /set_tempo, /set_meter, /dance/total_movement (the audience's movement
// mapped to a tempo, with its own rise and fall times), /print_clock (logs every beat), /tempo_tap — and the
// tempo source, /tempo_source, which chooses who moves the clock:
//   manual    /tempo, /set_tempo and movement messages (the default, as the Crowdstream server);
//   movement  movement messages only;
//   analysis  tempo estimates (the live analysis of the input, or /analysis/bpm from an outside
//             analyser): the clock follows an estimate of enough confidence with the movement law
//             (99 % of the way in the configured seconds); with phase 1 it also slides its beat
//             position onto the beats heard (TempoClock::nudge), once its tempo is within 1 BPM.
//   midi      an incoming MIDI clock, followed by the engine tick by tick (Engine::applyMidiIn);
//   link      the Ableton Link session only (LinkModule): loopd follows its tempo and phase and
//             commits nothing of its own (with Link on and another source, loopd's tempo
//             changes are committed to the session and the session's are taken).
// While a source other than manual leads, commands of the others answer /fail with the reason.
//
// Threads: control thread only.
#include <cstdint>
#include <vector>

#include "server/control/Module.h"

namespace loopd {

class LinkModule;

class TempoCommands final : public Module {
public:
    enum class Source : uint8_t { Manual, Movement, Analysis, Midi, Link };

    explicit TempoCommands(Controller& c); // registers the addresses
    void onBeat(const reply::Beat& b) override;

    // [control] Tap tempo (/tempo_tap, SooperLooper's tap_tempo): the tempo of the last taps (up
    // to four, each within 2 s of the one before) — at the message's timetag when it has one, else
    // when it arrives; a single tap starts the count. /fail while another source leads.
    void tap(Msg& m);
    // [control] A tempo step from a client (SooperLooper's global `tempo`), as /set_tempo.
    void setTempo(Msg& m, double bpm, const char* what);
    // An estimate of the tempo heard: the live analysis (every half second) or an outside
    // analyser. beatSample: absolute sample of a beat on the estimate's grid (-1: unknown).
    void estimate(double bpm, double confidence, double beatSample);
    Source source() const noexcept { return source_; }
    // [control] The Link module (nullptr: none); Link switched off while it led: manual again.
    void setLink(LinkModule* link) noexcept { link_ = link; }
    void linkOff();
    static const char* name(Source s) noexcept;

private:
    void hTempo(Msg&); void hSetTempo(Msg&); void hSetMeter(Msg&); void hPrintClock(Msg&); void hMovement(Msg&);
    void hTempoSource(Msg&); void hTempoTap(Msg&);
    void needSource(Source allowed, const char* what) const; // throws ArgError when another source leads
    void follow(double bpm);
    void pullPhase(double bpm, double beatSample);

    bool printClock_ = false;
    Source source_ = Source::Manual;
    bool phasePull_ = false;
    reply::Beat lastBeat_{-1, 0, 0, 0.0, 0};  // the clock's last whole beat (sample-exact)
    double target_ = 0.0;                     // the last tempo the analysis source asked for
    double lastBpm_ = 0.0, lastConfidence_ = 0.0; // the last estimate (for a switch to analysis)
    int64_t pullQuietUntil_ = 0;              // no new pull measured on beats before this sample
    std::vector<double> taps_;                // seconds of the last taps
    LinkModule* link_ = nullptr;
};

} // namespace loopd
