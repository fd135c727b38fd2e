#pragma once
// The analysis module: live onsets and tempo of the input (LiveAnalysis) to `/notify` clients —
// `/onset sampleTime(d) strength`, and `/tempo_estimate bpm confidence sampleTime(d)` when the
// estimate changes (at most every half second) — and `/analysis_input ch...` (which inputs it
// hears; none named: all of them, summed). Every estimate (and `/analysis/bpm bpm [confidence]`
// from an outside analyser, folded into the same range) goes to the tempo module, which moves
// the clock with it when the tempo source is `analysis`.
// Buffers: `/b_analyze buf` → `/b_analysis buf bpm confidence firstBeatFrame firstDownbeatFrame
// key` (MaterialAnalysis on a thread of its own: the buffer is copied, mono, on the worker in
// order with the other buffer commands; the result is kept with the buffer's data — asked again
// for unchanged data it answers at once — and players with `bpm -1` / `align 1` read it);
// `/b_beats buf` → `/b_beats.reply buf frame...`.
//
// Threads: control thread; the analysis runs on its own thread in real time and in poll() in
// offline renders (after every block, so that a render gives the same results every time).
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "server/analysis/LiveAnalysis.h"
#include "server/analysis/MaterialAnalysis.h"
#include "server/io/Worker.h"
#include "server/control/Module.h"

namespace loopd {

class Buffers;
class TempoCommands;

class AnalysisModule final : public Module {
public:
    AnalysisModule(Controller& c, TempoCommands& tempo, Buffers& buffers);
    ~AnalysisModule() override;
    void poll() override;

private:
    void hAnalysisInput(Msg&);
    void hOutsideBpm(Msg&);
    void hBAnalyze(Msg&);
    void hBBeats(Msg&);
    // [worker] Reply with what is known of buffer b's data `serial`; false: nothing yet.
    bool answerFromCache(uint16_t client, int32_t b, uint64_t serial);
    TempoCommands& tempo_;
    Buffers& buffers_;
    std::unique_ptr<LiveAnalysis> live_;
    struct Done { uint16_t client; int32_t b; uint64_t serial; bool silent; MaterialAnalysis result; };
    std::mutex mutex_;
    std::vector<Done> finished_;                  // analyses done, not yet answered [mutex_]
    std::map<int32_t, std::pair<uint64_t, MaterialAnalysis>> cache_; // buffer → (data serial, result) [mutex_]
    Worker jobs_;                                 // the analyses (own thread; inline offline)
};

} // namespace loopd
