// Offline render speed of the engine: 64 looping stereo players into one group at 48 kHz,
// block 64, at rate 1 (the exact-copy path) and rate 1.01 (Hermite interpolation). The
// `rt_factor` counter is seconds of audio rendered per second of CPU.
//   build/bench/loopd_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <chrono>
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

// ---------------------------------------------------------------------------------------------
// Players per core: what a user picks by. Looping stereo players of one method at one rate,
// rendered at block 64 and 256; from each iteration's time the same engine's time with no
// players is subtracted (measured in the same iteration), and
//   players_per_core = players x seconds of audio / (seconds with players - seconds without).
// Varispeed plays 64 players; the pitch-keeping stretchers 4 (their cost per player is
// 30-100x). "rate" for a stretcher is its speed (the pitch is kept).
//   build/bench/loopd_bench --benchmark_filter=PlayersPerCore --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
namespace {

const char* const kMethods[] = {"varispeed", "rb2", "rb3", "wsola"};
const double kRates[] = {1.0, 1.01, 0.8};

void BM_PlayersPerCore(benchmark::State& state) {
    const char* method = kMethods[state.range(0)];
    const double rate = kRates[state.range(1)];
    const int block = static_cast<int>(state.range(2));
    const bool vari = state.range(0) == 0;
    const int players = vari ? 64 : 4;
    EngineConfig cfg = OfflineServer::defaultConfig();
    cfg.blockSize = block;
    OfflineServer s(cfg), empty(cfg);
    TempDir dir;
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    std::vector<float> l(480000), r(480000);
    for (auto& x : l) x = u(rng);
    for (auto& x : r) x = u(rng);
    writeWav(dir.file("n.wav"), {l, r}, 48000);
    s.send("/b_allocRead", 1, dir.file("n.wav").c_str());
    s.send("/g_new", 1, 0, 0);
    for (int i = 0; i < players; ++i) {
        if (vari)
            s.send("/s_new", "player", 100 + i, 1, 1, "buf", 1, "loop", 1, "rate", static_cast<float>(rate), "start", i * 997, "gain", 0.05f);
        else
            s.send("/s_new", "player", 100 + i, 1, 1, "buf", 1, "loop", 1, "rate", static_cast<float>(rate), "stretch", method, "start", i * 997, "gain", 0.05f);
    }
    s.render(9600);
    empty.render(9600);
    std::vector<float> out(static_cast<size_t>(2 * block)), in(static_cast<size_t>(2 * block));
    float* outPtr[2] = {out.data(), out.data() + block};
    const float* inPtr[2] = {in.data(), in.data() + block};
    const int blocks = 48000 / block; // 1 s (1.0 at 64, 0.9984 at 256)
    double withPlayers = 0.0, without = 0.0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int b = 0; b < blocks; ++b) s.engine().process(inPtr, outPtr);
        const auto t1 = std::chrono::steady_clock::now();
        for (int b = 0; b < blocks; ++b) empty.engine().process(inPtr, outPtr);
        const auto t2 = std::chrono::steady_clock::now();
        const double a = std::chrono::duration<double>(t1 - t0).count();
        withPlayers += a;
        without += std::chrono::duration<double>(t2 - t1).count();
        state.SetIterationTime(a);
        benchmark::DoNotOptimize(out.data());
    }
    const double audio = static_cast<double>(state.iterations()) * blocks * block / 48000.0;
    state.counters["players_per_core"] = players * audio / std::max(1e-9, withPlayers - without);
    state.SetLabel(std::string(method) + " rate " + std::to_string(rate).substr(0, 4) + " block " + std::to_string(block));
}

} // namespace

BENCHMARK(BM_PlayersPerCore)->ArgsProduct({{0, 1, 2, 3}, {0, 1, 2}, {64, 256}})->Unit(benchmark::kMillisecond)->UseManualTime()->MinTime(1.0);
