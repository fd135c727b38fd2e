// Offline render speed of the engine: 64 looping stereo players into one group at 48 kHz,
// block 64, at rate 1 (the exact-copy path) and rate 1.01 (Hermite interpolation). The
// `rt_factor` counter is seconds of audio rendered per second of CPU.
//   build/bench/loopd_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <random>

#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

void renderPlayers(benchmark::State& state, float rate, int players) {
    EngineConfig cfg = OfflineServer::defaultConfig();
    OfflineServer s(cfg);
    TempDir dir;
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    std::vector<float> l(480000), r(480000); // 10 s of stereo noise
    for (auto& x : l) x = u(rng);
    for (auto& x : r) x = u(rng);
    writeWav(dir.file("n.wav"), {l, r}, 48000);
    s.send("/b_allocRead", 1, dir.file("n.wav").c_str());
    s.send("/g_new", 1, 0, 0);
    for (int i = 0; i < players; ++i)
        s.send("/s_new", "player", 100 + i, 1, 1, "buf", 1, "loop", 1, "rate", rate, "start", i * 997, "gain", 0.05f);
    s.render(1024);
    const int B = cfg.blockSize;
    std::vector<float> out(static_cast<size_t>(2 * B)), in(static_cast<size_t>(2 * B));
    float* outPtr[2] = {out.data(), out.data() + B};
    const float* inPtr[2] = {in.data(), in.data() + B};
    constexpr int kBlocks = 750; // 1 s of audio per iteration
    for (auto _ : state) {
        for (int b = 0; b < kBlocks; ++b) s.engine().process(inPtr, outPtr);
        benchmark::DoNotOptimize(out.data());
    }
    state.counters["rt_factor"] = benchmark::Counter(static_cast<double>(state.iterations()) * kBlocks * B / 48000.0,
                                                     benchmark::Counter::kIsRate);
}

void BM_Render64PlayersRate1(benchmark::State& state) { renderPlayers(state, 1.0f, 64); }
void BM_Render64PlayersRate1_01(benchmark::State& state) { renderPlayers(state, 1.01f, 64); }
void BM_Render1PlayerRate1_01(benchmark::State& state) { renderPlayers(state, 1.01f, 1); }
void BM_RenderEmptyEngine(benchmark::State& state) { renderPlayers(state, 1.0f, 0); }

} // namespace

BENCHMARK(BM_Render64PlayersRate1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Render64PlayersRate1_01)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Render1PlayerRate1_01)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_RenderEmptyEngine)->Unit(benchmark::kMillisecond)->UseRealTime();
