// Cost of the looper per stereo 64-frame block at 48 kHz.
//   loopCost/play, loopCost/overdub: 8 stereo loops of 2 s playing (or overdubbing: the write
//     head copies pages and mixes the input), minus the same scene without loops. Counters:
//     us_per_loop_block and loops_per_core.
//   editBlock/undo, editBlock/capture: the longest block in which an undo of a fully overdubbed
//     30 s loop (page swaps) or a capture of 30 s (copied over the next blocks) happens, against
//     the median block around it. Counter: us_block (the edit's block), us_median.
//   build/bench/loopd_looper_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>

#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

ControllerOptions options(double seconds) {
    ControllerOptions o;
    o.loopSeconds = seconds;
    o.undoSeconds = seconds;
    return o;
}

EngineConfig config() {
    EngineConfig c = OfflineServer::defaultConfig();
    c.captureSeconds = 40.0;
    return c;
}

double processBlocks(OfflineServer& s, int blocks) {
    const int B = s.config().blockSize;
    std::vector<float> out(static_cast<size_t>(2 * B)), in(static_cast<size_t>(2 * B));
    for (int i = 0; i < B; ++i) in[static_cast<size_t>(i)] = in[static_cast<size_t>(B + i)] = 0.1f * static_cast<float>((i * 7919) % 101 - 50) / 50.0f;
    float* outPtr[2] = {out.data(), out.data() + B};
    const float* inPtr[2] = {in.data(), in.data() + B};
    const auto t0 = std::chrono::steady_clock::now();
    for (int b = 0; b < blocks; ++b) s.engine().process(inPtr, outPtr);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / blocks;
}

double sceneSecondsPerBlock(int loops, bool overdub, int blocks) {
    OfflineServer s(config(), {}, options(4.0));
    s.input = {sine(220.0, 0.2, 48000 * 4, 48000.0), sine(330.0, 0.2, 48000 * 4, 48000.0)};
    for (int i = 0; i < loops; ++i) s.send("/loop_add", 2, 4.0f);
    s.send("/set", "sync_source", 0.0f);
    s.send("/sl/-1/hit", "record");
    s.render(48000 * 2);
    s.send("/sl/-1/hit", "record");
    s.render(4800);
    if (overdub) s.send("/sl/-1/hit", "overdub");
    s.render(4800);
    return processBlocks(s, blocks);
}

void loopCost(benchmark::State& state, bool overdub) {
    constexpr int kLoops = 8, kBlocks = 750;
    double perLoop = 0.0;
    for (auto _ : state) {
        const double base = sceneSecondsPerBlock(0, false, kBlocks);
        const double with = sceneSecondsPerBlock(kLoops, overdub, kBlocks);
        perLoop = std::max(1e-12, (with - base) / kLoops);
        state.SetIterationTime(perLoop);
    }
    state.counters["us_per_loop_block"] = perLoop * 1e6;
    state.counters["loops_per_core"] = (64.0 / 48000.0) / perLoop;
}

void editBlock(benchmark::State& state, bool capture) {
    double edit = 0.0, median = 0.0;
    for (auto _ : state) {
        OfflineServer s(config(), {}, options(32.0));
        s.send("/loop_add", 2, 32.0f);
        s.send("/set", "sync_source", 0.0f);
        if (!capture) {
            s.send("/sl/0/hit", "record");
            s.render(48000 * 30);
            s.send("/sl/0/hit", "record");
            s.render(4800);
            s.send("/sl/0/hit", "overdub");
            s.render(48000 * 30);
            s.send("/sl/0/hit", "overdub");
            s.render(4800);
        } else {
            s.render(48000 * 31);
        }
        std::vector<double> times;
        for (int b = 0; b < 200; ++b) {
            if (b == 100) s.send("/sl/0/hit", capture ? "capture_seconds" : "undo", capture ? 30.0f : 0.0f);
            times.push_back(processBlocks(s, 1));
        }
        edit = *std::max_element(times.begin() + 100, times.end());
        std::nth_element(times.begin(), times.begin() + 50, times.begin() + 100);
        median = times[50];
        state.SetIterationTime(edit);
    }
    state.counters["us_block"] = edit * 1e6;
    state.counters["us_median"] = median * 1e6;
}

} // namespace

BENCHMARK_CAPTURE(loopCost, play, false)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);
BENCHMARK_CAPTURE(loopCost, overdub, true)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);
BENCHMARK_CAPTURE(editBlock, undo, false)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(1);
BENCHMARK_CAPTURE(editBlock, capture, true)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(1);
