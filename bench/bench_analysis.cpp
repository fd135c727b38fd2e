// What live tempo tracking costs (server/analysis/TempoTracker): the detection function per
// second of 48 kHz input, and one tempo estimate over an 8 s window (run every half second live).
// Per second of input the cost is one push-second + two estimates; the aim is under 2 % of one
// core (measured here, medians of 5: 2.79 ms + 2 x 0.995 ms = 0.48 % of a core for the tempo;
// the whole live analysis with aubio's onsets every 128 samples: 8.11 ms, 0.81 % of a core).
// /b_analyze of one minute of material: 499 ms (median of 3), so a 5-minute track in ~2.5 s.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "server/analysis/LiveAnalysis.h"
#include "server/analysis/MaterialAnalysis.h"
#include "server/analysis/TempoTracker.h"
#include "server/engine/Engine.h"

using namespace loopd;

namespace {
std::vector<float> clicksAndNoise(double seconds) {
    std::vector<float> x(static_cast<size_t>(seconds * 48000.0));
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    for (size_t i = 0; i < x.size(); ++i) x[i] = u(rng) + ((i % 24000) < 480 ? 0.8f * std::sin(0.13f * static_cast<float>(i % 24000)) : 0.0f);
    return x;
}
} // namespace

static void BM_TempoTrackerOneSecondOfInput(benchmark::State& state) {
    const auto x = clicksAndNoise(1.0);
    TempoTracker t(48000.0);
    for (auto _ : state) {
        for (size_t i = 0; i < x.size(); i += 256) t.push(x.data() + i, 256);
        benchmark::ClobberMemory();
    }
}
BENCHMARK(BM_TempoTrackerOneSecondOfInput)->Unit(benchmark::kMillisecond);

static void BM_TempoTrackerEstimateOverEightSeconds(benchmark::State& state) {
    const auto x = clicksAndNoise(8.0);
    TempoTracker t(48000.0);
    t.push(x.data(), static_cast<int>(x.size()));
    for (auto _ : state) benchmark::DoNotOptimize(t.estimate(8.0));
}
BENCHMARK(BM_TempoTrackerEstimateOverEightSeconds)->Unit(benchmark::kMillisecond);

// The whole live analysis (onsets every 128 samples with aubio, the detection function, and the
// tempo estimates every half second) per second of 48 kHz input, fed through the engine's ring.
static void BM_LiveAnalysisOneSecondOfInput(benchmark::State& state) {
    EngineConfig c;
    c.realtimeClock = false;
    Engine engine(c);
    LiveAnalysis live(engine, 70.0, 180.0);
    const auto x = clicksAndNoise(1.0);
    for (auto _ : state) {
        for (size_t i = 0; i < x.size(); i += 4800) {
            const float* ch[1] = {x.data() + i};
            engine.analysisRing().writePlanar(ch, 0, 4800, 1);
            live.step();
        }
        benchmark::DoNotOptimize(live.takeEvents());
    }
}
BENCHMARK(BM_LiveAnalysisOneSecondOfInput)->Unit(benchmark::kMillisecond);

// /b_analyze: the whole analysis (beats, grid, downbeats, key, onsets) of one minute of 48 kHz
// material (clicks and noise, a beat every half second); the figure is seconds per minute.
static void BM_MaterialAnalysisOneMinute(benchmark::State& state) {
    const auto x = clicksAndNoise(60.0);
    for (auto _ : state) benchmark::DoNotOptimize(analyseMaterial(x, 48000.0, 70.0, 180.0, 4));
}
BENCHMARK(BM_MaterialAnalysisOneMinute)->Unit(benchmark::kMillisecond)->Iterations(3);
