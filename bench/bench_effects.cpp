// Cost of each effect per stereo 64-frame block at 48 kHz: a group with one looping stereo
// player and 8 instances of the effect in series, minus the same scene without effects.
// Counters: us_per_instance_block (CPU time of one instance for one block) and
// instances_per_core (how many one core sustains in real time).
// BM_MasterLimiter: the master limiter alone on stereo 64-frame blocks, at rest (a quiet
// programme: the pass-through shortcut) and limiting all the time (noise 12 dB over the ceiling);
// the time is for 750 blocks, one second of audio.
//   build/bench/loopd_effects_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <chrono>
#include <random>

#include "dsp/Limiter.h"

#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

double secondsPerBlock(const char* type, int count, int blocks) {
    EngineConfig cfg = OfflineServer::defaultConfig();
    OfflineServer s(cfg);
    TempDir dir;
    const auto x = sine(220.0, 0.3, 48000, 48000.0), y = sine(330.0, 0.3, 48000, 48000.0);
    writeWav(dir.file("s.wav"), {x, y}, 48000);
    s.send("/b_allocRead", 1, dir.file("s.wav").c_str());
    s.send("/g_new", 10, 1, 0);
    s.send("/s_new", "player", 100, 0, 10, "buf", 1, "loop", 1);
    for (int i = 0; i < count; ++i) {
        const int id = 200 + i;
        const std::string t = type;
        if (t == "filter") s.send("/s_new", type, id, 1, 10, "mode", "lp", "cutoffHz", 1200.0f, "q", 2.0f, "lfoBeats", 1.0f, "lfoDepthOctaves", 2.0f);
        else if (t == "delay") s.send("/s_new", type, id, 1, 10, "delayBeats", 0.75f, "feedback", 0.5f, "mix", 0.3f);
        else if (t == "stutter") s.send("/s_new", type, id, 1, 10, "division", 16, "engage", 1);
        else s.send("/s_new", type, id, 1, 10);
    }
    s.render(4800);
    const int B = cfg.blockSize;
    std::vector<float> out(static_cast<size_t>(2 * B)), in(static_cast<size_t>(2 * B));
    float* outPtr[2] = {out.data(), out.data() + B};
    const float* inPtr[2] = {in.data(), in.data() + B};
    const auto t0 = std::chrono::steady_clock::now();
    for (int b = 0; b < blocks; ++b) s.engine().process(inPtr, outPtr);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / blocks;
}

void effectCost(benchmark::State& state, const char* type) {
    constexpr int kInstances = 8, kBlocks = 750; // 1 s of audio per measurement
    double perInstance = 0.0;
    for (auto _ : state) {
        const double base = secondsPerBlock("none", 0, kBlocks);
        const double with = secondsPerBlock(type, kInstances, kBlocks);
        perInstance = std::max(1e-12, (with - base) / kInstances);
        state.SetIterationTime(perInstance);
    }
    state.counters["us_per_instance_block"] = perInstance * 1e6;
    state.counters["instances_per_core"] = (64.0 / 48000.0) / perInstance;
}

} // namespace

BENCHMARK_CAPTURE(effectCost, eq3, "eq3")->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);
BENCHMARK_CAPTURE(effectCost, filter, "filter")->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);
BENCHMARK_CAPTURE(effectCost, delay, "delay")->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);
BENCHMARK_CAPTURE(effectCost, reverb, "reverb")->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);
BENCHMARK_CAPTURE(effectCost, stutter, "stutter")->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);
BENCHMARK_CAPTURE(effectCost, limiter, "limiter")->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);
BENCHMARK_CAPTURE(effectCost, gain, "gain")->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);

namespace {

void BM_MasterLimiter(benchmark::State& state) {
    const bool loud = state.range(0) != 0;
    constexpr int kBlock = 64, kBlocks = 750;
    std::mt19937 rng(1);
    std::normal_distribution<float> g(0.0f, loud ? 2.0f : 0.1f);
    std::vector<float> x(static_cast<size_t>(2 * kBlock * kBlocks));
    for (float& v : x) v = g(rng);
    dsp::Limiter lim;
    lim.prepare(48000.0, 2, {});
    std::vector<float> buf(static_cast<size_t>(2 * kBlock));
    for (auto _ : state) {
        for (int b = 0; b < kBlocks; ++b) {
            const float* src = x.data() + static_cast<size_t>(2 * kBlock * b);
            std::copy_n(src, 2 * kBlock, buf.data());
            float* ch[2] = {buf.data(), buf.data() + kBlock};
            lim.process(ch, 0, kBlock);
        }
        benchmark::DoNotOptimize(buf.data());
    }
}

} // namespace

BENCHMARK(BM_MasterLimiter)->ArgName("limiting")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
