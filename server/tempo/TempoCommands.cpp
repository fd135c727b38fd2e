// The tempo module (TempoCommands.h).
#include "server/tempo/TempoCommands.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>

#include "server/engine/Engine.h"

namespace loopd {
TempoCommands::TempoCommands(Controller& c) : Module(c) {
    on("/set_tempo", &TempoCommands::hSetTempo);
    on("/tempo", &TempoCommands::hTempo);
    on("/set_meter", &TempoCommands::hSetMeter);
    on("/print_clock", &TempoCommands::hPrintClock);
    on("/dance/total_movement", &TempoCommands::hMovement);
}

void TempoCommands::onBeat(const reply::Beat& b) {
    if (!printClock_) return;
    const double barPhase = static_cast<double>(b.beatInBar - 1) / std::max(1, engine_.config().beatsPerBar);
    spdlog::info("bar={} beat={} bar_phase={:.3f} beat_phase={:.3f} bpm={:.2f}", b.bar, b.beatInBar, barPhase, 0.0, b.bpm);
}

void TempoCommands::hSetTempo(Msg& m) {
    const float bpm = m.args.number("bpm");
    m.args.expectEnd();
    if (!(bpm >= 20.0f && bpm <= 400.0f)) throw osc::ArgError("bpm must be 20..400, got " + std::to_string(bpm));
    push(m, cmd::Tempo{bpm, 0.0, 0.0, 0});
    done(m.client, m.address);
}

void TempoCommands::hTempo(Msg& m) {
    const float bpm = m.args.number("bpm");
    const double ramp = m.args.atEnd() ? 0.0 : seconds(m.args, "ramp seconds");
    m.args.expectEnd();
    if (!(bpm >= 20.0f && bpm <= 400.0f)) throw osc::ArgError("bpm must be 20..400, got " + std::to_string(bpm));
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
    // With --disable-time-stretch the clock still follows the movement; the players do not.
    const MovementConfig& mv = options_.movement;
    const double target = mv.targetFor(mv.normalise(raw));
    push(m, cmd::Tempo{target, mv.upSeconds, mv.downSeconds, 2});
    done(m.client, m.address);
}

} // namespace loopd
