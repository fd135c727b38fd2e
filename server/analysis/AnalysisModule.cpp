// The analysis module (AnalysisModule.h).
#include "server/analysis/AnalysisModule.h"

#include <string>

namespace loopd {

AnalysisModule::AnalysisModule(Controller& c) : Module(c) {
    on("/analysis_input", &AnalysisModule::hAnalysisInput);
    live_ = std::make_unique<LiveAnalysis>(engine_, options_.bpmLow, options_.bpmHigh);
    if (!options_.offline) live_->start();
}

AnalysisModule::~AnalysisModule() { live_->stop(); }

void AnalysisModule::poll() {
    if (options_.offline) live_->step();
    for (const LiveAnalysis::Event& e : live_->takeEvents()) {
        if (e.kind == LiveAnalysis::Event::Kind::Onset)
            broadcast(osc::MessageBuilder("/onset").d(static_cast<double>(e.sampleTime)).f(static_cast<float>(e.value)));
        else
            broadcast(osc::MessageBuilder("/tempo_estimate").f(static_cast<float>(e.value)).f(static_cast<float>(e.confidence))
                          .d(static_cast<double>(e.sampleTime)));
    }
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
