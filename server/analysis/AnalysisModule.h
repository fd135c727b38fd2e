#pragma once
// The analysis module: live onsets and tempo of the input (LiveAnalysis) to `/notify` clients —
// `/onset sampleTime(d) strength`, and `/tempo_estimate bpm confidence sampleTime(d)` when the
// estimate changes (at most every half second) — and `/analysis_input ch...` (which inputs it
// hears; none named: all of them, summed).
//
// Threads: control thread; the analysis runs on its own thread in real time and in poll() in
// offline renders (after every block, so that a render gives the same results every time).
#include <memory>

#include "server/analysis/LiveAnalysis.h"
#include "server/control/Module.h"

namespace loopd {

class AnalysisModule final : public Module {
public:
    explicit AnalysisModule(Controller& c);
    ~AnalysisModule() override;
    void poll() override;

private:
    void hAnalysisInput(Msg&);
    std::unique_ptr<LiveAnalysis> live_;
};

} // namespace loopd
