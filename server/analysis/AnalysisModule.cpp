// The analysis module (AnalysisModule.h).
#include "server/analysis/AnalysisModule.h"

#include <string>

#include "server/tempo/TempoCommands.h"

namespace loopd {

AnalysisModule::AnalysisModule(Controller& c, TempoCommands& tempo) : Module(c), tempo_(tempo) {
    on("/analysis_input", &AnalysisModule::hAnalysisInput);
    on("/analysis/bpm", &AnalysisModule::hOutsideBpm);
    live_ = std::make_unique<LiveAnalysis>(engine_, options_.analysis.bpmLow, options_.analysis.bpmHigh);
    if (!options_.offline) live_->start();
}

AnalysisModule::~AnalysisModule() { live_->stop(); }

void AnalysisModule::poll() {
    if (options_.offline) live_->step();
    for (const LiveAnalysis::Event& e : live_->takeEvents()) {
        if (e.kind == LiveAnalysis::Event::Kind::Onset)
            broadcast(osc::MessageBuilder("/onset").d(static_cast<double>(e.sampleTime)).f(static_cast<float>(e.value)));
        else {
            if (e.changed)
                broadcast(osc::MessageBuilder("/tempo_estimate").f(static_cast<float>(e.value)).f(static_cast<float>(e.confidence))
                              .d(static_cast<double>(e.sampleTime)));
            tempo_.estimate(e.value, e.confidence, e.beatSample);
        }
    }
}

void AnalysisModule::hOutsideBpm(Msg& m) {
    const float bpm = m.args.number("bpm");
    const float confidence = m.args.atEnd() ? 1.0f : m.args.number("confidence");
    m.args.expectEnd();
    if (!(bpm >= 20.0f && bpm <= 400.0f)) throw osc::ArgError("bpm must be 20..400, got " + std::to_string(bpm));
    if (!(confidence >= 0.0f && confidence <= 1.0f)) throw osc::ArgError("confidence must be 0..1, got " + std::to_string(confidence));
    tempo_.estimate(TempoTracker::fold(bpm, options_.analysis.bpmLow, options_.analysis.bpmHigh), confidence, -1.0);
    done(m.client, m.address);
}

void AnalysisModule::hAnalysisInput(Msg& m) {
    const int inputs = engine_.config().numInputs;
    uint32_t mask = 0;
    while (!m.args.atEnd()) {
        const int32_t ch = m.args.int32("input channel");
        if (ch < 0 || ch >= inputs || ch >= 32)
            throw osc::ArgError("input channel " + std::to_string(ch) + " out of range (0.." + std::to_string(inputs - 1) + ")");
        mask |= 1u << ch;
    }
    engine_.setAnalysisInputs(mask);
    done(m.client, m.address);
}

} // namespace loopd
