// Time-stretch cost per engine at 48 kHz, ratio 0.8 (speed 1.25, a clock at 150 BPM over 120 BPM
// material): `players_per_core` = stereo stretched players one core sustains in real time
// through loopd's player; `overhead_pct` = the player path's cost over calling the library
// directly on the same input in the same block sizes (the player's cost is the engine with the
// players less the same engine without them).
//   build/bench/loopd_stretch_bench
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "stretch/Stretcher.h"
#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

constexpr int kPlayers = 4;
constexpr int kBlocks = 2250; // 3 s

double playerSeconds(const char* method, bool glide) {
    OfflineServer s;
    TempDir dir;
    const auto x = sine(220.0, 0.3, 48000, 48000.0), y = sine(330.0, 0.3, 48000, 48000.0);
    writeWav(dir.file("s.wav"), {x, y}, 48000);
    s.send("/b_allocRead", 1, dir.file("s.wav").c_str());
    s.send("/set_tempo", 150.0f);
    for (int i = 0; i < kPlayers; ++i)
        s.send("/s_new", "player", 100 + i, 0, 0, "buf", 1, "loop", 1, "follow", 1, "stretch", method, "gain", 0.2f);
    s.render(9600);
    if (glide) s.send("/tempo", 100.0f, 20.0f); // a ramp: a new ratio every block, as a following clock gives
    std::vector<float> out(128), in(128);
    float* op[2] = {out.data(), out.data() + 64};
    const float* ip[2] = {in.data(), in.data() + 64};
    const auto t0 = std::chrono::steady_clock::now();
    for (int b = 0; b < kBlocks; ++b) s.engine().process(ip, op);
    const double all = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The same engine with no players, to subtract.
    OfflineServer e;
    e.render(9600);
    const auto t1 = std::chrono::steady_clock::now();
    for (int b = 0; b < kBlocks; ++b) e.engine().process(ip, op);
    const double empty = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    return (all - empty) / kPlayers;
}

// The library alone, fed and read in its own layout (Rubber Band planar, SoundTouch interleaved:
// the wrapper passes SoundTouch's calls straight through), 64 output frames a block.
double librarySeconds(stretch::Method m) {
    auto st = stretch::Stretcher::create(m, 2, 48000.0, 4096, 0.8, 1.0);
    st->prime(0.8, 1.0);
    const bool interleaved = m == stretch::Method::Wsola;
    const auto x = sine(220.0, 0.3, 48000, 48000.0), y = sine(330.0, 0.3, 48000, 48000.0);
    std::vector<float> fl(4096), fr(4096), fi(2 * 4096), ol(64), orr(64), oi(128);
    const float* fp[2] = {fl.data(), fr.data()};
    size_t pos = 0;
    auto block = [&] {
        int written = 0;
        while (written < 64) {
            const int a = st->available();
            if (a > 0) {
                const int k = std::min(a, 64 - written);
                if (interleaved) {
                    written += st->retrieveInterleaved(oi.data() + 2 * written, k);
                } else {
                    float* dst[2] = {ol.data() + written, orr.data() + written};
                    written += st->retrieve(dst, k);
                }
                continue;
            }
            const int want = st->inputWanted();
            if (interleaved) {
                for (int k = 0; k < want; ++k, ++pos) {
                    fi[static_cast<size_t>(2 * k)] = x[pos % x.size()];
                    fi[static_cast<size_t>(2 * k + 1)] = y[pos % y.size()];
                }
                st->feedInterleaved(fi.data(), want);
            } else {
                for (int k = 0; k < want; ++k, ++pos) { fl[static_cast<size_t>(k)] = x[pos % x.size()]; fr[static_cast<size_t>(k)] = y[pos % y.size()]; }
                st->feed(fp, want);
            }
        }
    };
    for (int b = 0; b < 150; ++b) block();
    const auto t0 = std::chrono::steady_clock::now();
    for (int b = 0; b < kBlocks; ++b) block();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Each iteration measures the player path and then the library, alternately (the machine's
// load drifts): the counters are the medians over the iterations and their ratio.
void stretchCost(benchmark::State& state, const char* name, stretch::Method m, bool glide) {
    std::vector<double> player, lib;
    for (auto _ : state) {
        player.push_back(playerSeconds(name, glide) / 3.0);
        lib.push_back(librarySeconds(m) / 3.0);
        state.SetIterationTime(player.back());
    }
    state.counters["players_per_core"] = 1.0 / median(player);
    state.counters["overhead_pct"] = 100.0 * (median(player) / median(lib) - 1.0);
}

} // namespace

BENCHMARK_CAPTURE(stretchCost, rb2, "rb2", stretch::Method::Rb2, false)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(7);
BENCHMARK_CAPTURE(stretchCost, rb3, "rb3", stretch::Method::Rb3, false)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(7);
BENCHMARK_CAPTURE(stretchCost, wsola, "wsola", stretch::Method::Wsola, false)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(7);
// The tempo gliding under the players (the movement controller's case): overhead_pct is against
// the library at a fixed ratio, so it includes the cost of the ratio changes.
BENCHMARK_CAPTURE(stretchCost, rb2_glide, "rb2", stretch::Method::Rb2, true)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(7);
BENCHMARK_CAPTURE(stretchCost, rb3_glide, "rb3", stretch::Method::Rb3, true)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(7);
BENCHMARK_CAPTURE(stretchCost, wsola_glide, "wsola", stretch::Method::Wsola, true)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(7);
