#pragma once
// The analysis module: live onsets and tempo of the input (LiveAnalysis) to `/notify` clients —
// `/onset sampleTime(d) strength`, and `/tempo_estimate bpm confidence sampleTime(d)` when the
// estimate changes (at most every half second) — and `/analysis_input ch...` (which inputs it
// hears; none named: all of them, summed). Every estimate (and `/analysis/bpm bpm [confidence]`
// from an outside analyser, folded into the same range) goes to the tempo module, which moves
// the clock with it when the tempo source is `analysis`.
//
// Threads: control thread; the analysis runs on its own thread in real time and in poll() in
// offline renders (after every block, so that a render gives the same results every time).
#include <memory>

#include "server/analysis/LiveAnalysis.h"
#include "server/control/Module.h"

namespace loopd {

class TempoCommands;

class AnalysisModule final : public Module {
public:
    AnalysisModule(Controller& c, TempoCommands& tempo);
    ~AnalysisModule() override;
    void poll() override;

private:
    void hAnalysisInput(Msg&);
    void hOutsideBpm(Msg&);
    TempoCommands& tempo_;
    std::unique_ptr<LiveAnalysis> live_;
};

} // namespace loopd
