// The tempo module (TempoCommands.h).
#include "server/tempo/TempoCommands.h"
#include "server/control/ControlClock.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "server/engine/Engine.h"
#include "server/engine/TempoClock.h"
#include "server/net/LinkModule.h"

namespace loopd {
TempoCommands::TempoCommands(Controller& c) : Module(c) {
    on("/set_tempo", &TempoCommands::hSetTempo);
    on("/tempo", &TempoCommands::hTempo);
    on("/set_meter", &TempoCommands::hSetMeter);
    on("/print_clock", &TempoCommands::hPrintClock);
    on("/dance/total_movement", &TempoCommands::hMovement);
    on("/tempo_source", &TempoCommands::hTempoSource);
    on("/tempo_tap", &TempoCommands::hTempoTap);
}

void TempoCommands::hTempoTap(Msg& m) {
    m.args.expectEnd();
    tap(m);
    done(m.client, m.address);
}

void TempoCommands::tap(Msg& m) {
    needSource(Source::Manual, "a tap");
    double now;
    if (m.timetag > 1) now = static_cast<double>(m.timetag >> 32) + static_cast<double>(m.timetag & 0xffffffffu) / 4294967296.0;
    else now = control_clock::steadySeconds();
    if (!taps_.empty() && (now - taps_.back() > 2.0 || now < taps_.back())) taps_.clear();
    taps_.push_back(now);
    if (taps_.size() > 4) taps_.erase(taps_.begin());
    if (taps_.size() < 2) return;
    const double bpm = 60.0 * static_cast<double>(taps_.size() - 1) / (taps_.back() - taps_.front());
    if (bpm >= 20.0 && bpm <= 400.0) push(m, cmd::Tempo{bpm, 0.0, 0.0, 0});
}

void TempoCommands::setTempo(Msg& m, double bpm, const char* what) {
    if (!(bpm >= 20.0 && bpm <= 400.0)) throw osc::ArgError(std::string(what) + " must be 20..400 BPM");
    needSource(Source::Manual, what);
    push(m, cmd::Tempo{bpm, 0.0, 0.0, 0});
}

const char* TempoCommands::name(Source s) noexcept {
    switch (s) {
    case Source::Manual: return "manual";
    case Source::Movement: return "movement";
    case Source::Analysis: return "analysis";
    case Source::Midi: return "midi";
    case Source::Link: return "link";
    }
    return "?";
}

void TempoCommands::onBeat(const reply::Beat& b) {
    lastBeat_ = b;
    if (!printClock_) return;
    const double barPhase = static_cast<double>(b.beatInBar - 1) / std::max(1, engine_.config().beatsPerBar);
    spdlog::info("bar={} beat={} bar_phase={:.3f} beat_phase={:.3f} bpm={:.2f}", b.bar, b.beatInBar, barPhase, 0.0, b.bpm);
}

void TempoCommands::needSource(Source allowed, const char* what) const {
    if (source_ == Source::Manual || source_ == allowed) return;
    throw osc::ArgError(std::string(what) + " does not move the clock: the tempo source is " + name(source_) +
                        " (/tempo_source manual gives it back)");
}

void TempoCommands::hSetTempo(Msg& m) {
    const float bpm = m.args.number("bpm");
    m.args.expectEnd();
    if (!(bpm >= 20.0f && bpm <= 400.0f)) throw osc::ArgError("bpm must be 20..400, got " + std::to_string(bpm));
    needSource(Source::Manual, "/set_tempo");
    push(m, cmd::Tempo{bpm, 0.0, 0.0, 0});
    done(m.client, m.address);
}

void TempoCommands::hTempo(Msg& m) {
    const float bpm = m.args.number("bpm");
    const double ramp = m.args.atEnd() ? 0.0 : seconds(m.args, "ramp seconds");
    m.args.expectEnd();
    if (!(bpm >= 20.0f && bpm <= 400.0f)) throw osc::ArgError("bpm must be 20..400, got " + std::to_string(bpm));
    needSource(Source::Manual, "/tempo");
    push(m, cmd::Tempo{bpm, ramp, 0.0, static_cast<uint8_t>(ramp > 0.0 ? 1 : 0)});
    done(m.client, m.address);
}

void TempoCommands::hSetMeter(Msg& m) {
    const int32_t beats = m.args.int32("beats per bar");
    m.args.expectEnd();
    if (beats < 1 || beats > 32) throw osc::ArgError("beats per bar must be 1..32, got " + std::to_string(beats));
    push(m, cmd::Meter{beats});
    done(m.client, m.address);
}

void TempoCommands::hPrintClock(Msg& m) {
    const int32_t on = m.args.atEnd() ? 1 : m.args.int32("flag");
    m.args.expectEnd();
    printClock_ = on != 0;
    spdlog::info("clock printing {}", printClock_ ? "on" : "off");
    done(m.client, m.address);
}

void TempoCommands::hMovement(Msg& m) {
    const float raw = m.args.number("movement");
    m.args.expectEnd();
    if (raw < 0.0f) throw osc::ArgError("movement must not be negative, got " + std::to_string(raw));
    needSource(Source::Movement, "movement");
    // With --disable-time-stretch the clock still follows the movement; the players do not.
    const MovementConfig& mv = options_.movement;
    const double target = mv.targetFor(mv.normalise(raw));
    push(m, cmd::Tempo{target, mv.upSeconds, mv.downSeconds, 2});
    done(m.client, m.address);
}

void TempoCommands::hTempoSource(Msg& m) {
    if (m.args.atEnd()) { // a query
        send(m.client, osc::MessageBuilder("/tempo_source.reply").s(name(source_)).i(phasePull_ ? 1 : 0));
        return;
    }
    const std::string s = m.args.string("source");
    const int32_t phase = m.args.atEnd() ? 0 : m.args.int32("phase pull flag");
    m.args.expectEnd();
    Source next;
    if (s == "manual") next = Source::Manual;
    else if (s == "movement") next = Source::Movement;
    else if (s == "analysis") next = Source::Analysis;
    else if (s == "midi") next = Source::Midi;
    else if (s == "link") {
        if (!link_ || !link_->linkOn()) throw osc::ArgError("tempo source link needs Link on (/link 1 or --link first)");
        next = Source::Link;
    } else throw osc::ArgError("unknown tempo source '" + s + "' (manual, movement, analysis, midi, link)");
    if (phase != 0 && next != Source::Analysis) throw osc::ArgError("phase pull needs the analysis source");
    const bool changed = next != source_;
    // The engine follows an incoming MIDI clock itself (on the audio thread, tick by tick).
    if (changed && (next == Source::Midi || source_ == Source::Midi) && !push(m, cmd::MidiClockIn{next == Source::Midi})) return;
    // Link: the engine's peer follows only while link leads, and leads too otherwise.
    if (changed && (next == Source::Link || source_ == Source::Link) && link_ && link_->linkOn() && !link_->setFollow(m, next == Source::Link)) return;
    source_ = next;
    phasePull_ = phase != 0;
    target_ = 0.0;
    pullQuietUntil_ = 0;
    if (changed) spdlog::info("tempo source: {}{}", name(source_), phasePull_ ? " (beat phase pulled onto the beats heard)" : "");
    // The estimate already known moves the clock at once; with none (no input) the tempo stays.
    if (source_ == Source::Analysis && lastBpm_ > 0.0 && lastConfidence_ >= options_.analysis.minConfidence) follow(lastBpm_);
    done(m.client, m.address);
}

void TempoCommands::linkOff() {
    if (source_ != Source::Link) return;
    source_ = Source::Manual;
    spdlog::info("tempo source: manual (Link is off)");
}

void TempoCommands::estimate(double bpm, double confidence, double beatSample) {
    lastBpm_ = bpm;
    lastConfidence_ = confidence;
    if (source_ != Source::Analysis || !(bpm > 0.0) || confidence < options_.analysis.minConfidence) return;
    follow(bpm);
    if (phasePull_ && beatSample >= 0.0) pullPhase(bpm, beatSample);
}

void TempoCommands::follow(double bpm) {
    if (std::fabs(bpm - target_) < 0.05) return;
    target_ = bpm;
    const AnalysisConfig& a = options_.analysis;
    pushFromWorker(kNoClient, "/tempo_source", 0, cmd::Tempo{bpm, a.upSeconds, a.downSeconds, 2});
}

void TempoCommands::pullPhase(double bpm, double beatSample) {
    // Only once the clock's tempo is the one heard (while it glides the phase runs anyway), only
    // on beats after the last slide ended (the clock's beat at an earlier sample is not known
    // from its last beat alone), and only from a sample-exact beat of the clock.
    if (lastBeat_.beat < 0 || std::fabs(lastBeat_.bpm - bpm) > 1.0 || beatSample < static_cast<double>(pullQuietUntil_)) return;
    const double sr = engine_.config().sampleRate;
    const double clockBeats = static_cast<double>(lastBeat_.beat) + (beatSample - static_cast<double>(lastBeat_.sampleTime)) * lastBeat_.bpm / 60.0 / sr;
    const double error = clockBeats - std::round(clockBeats); // beats the clock is ahead of the beat heard
    if (std::fabs(error) < 0.004) return;                    // ~2 ms at 120 BPM: on the beat
    // Slide the whole error back over a second (TempoClock caps the pace change at 2 %).
    const double secondsNeeded = std::max(1.0, std::fabs(error) / (TempoClock::kNudgePace * lastBeat_.bpm / 60.0));
    pushFromWorker(kNoClient, "/tempo_source", 0, cmd::Nudge{-error, 1.0});
    pullQuietUntil_ = engine_.sampleTime() + static_cast<int64_t>((secondsNeeded + 0.1) * sr);
    spdlog::debug("tempo source analysis: beat phase {:+.3f} beats off the beats heard, sliding it back", error);
}

} // namespace loopd
