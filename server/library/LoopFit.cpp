// A loop fitted to an exact length (LoopFit.h).
#include "server/library/LoopFit.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

namespace loopd::library {

std::unique_ptr<BufferData> fitLoop(const BufferData& loop, int64_t frames, stretch::Method method) {
    if (loop.numFrames <= 0 || frames <= 0) throw std::runtime_error("an empty loop cannot be fitted");
    const int ch = std::max(1, loop.numChannels);
    auto out = BufferData::zeros(frames, ch, loop.sampleRate);
    out->sourceRate = loop.sourceRate;
    const double ratio = static_cast<double>(frames) / static_cast<double>(loop.numFrames);
    const int64_t n = loop.numFrames;
    auto at = [&](int c, int64_t i) { // the loop read cyclically
        const int64_t k = ((i % n) + n) % n;
        return loop.channel(c)[k];
    };
    if (method != stretch::Method::Rate && !(ratio >= kMinFitRatio && ratio <= kMaxFitRatio)) {
        // Rubber Band and SoundTouch are made for [0.25, 4]; far outside it R3 reads past its
        // buffers (a segfault in synthesiseChannel at 0.021, found by the fuzzer).
        char why[160];
        std::snprintf(why, sizeof why, "fitting the loop would stretch it by %.4g, outside %.2f..%.0f (its tempo is too far from the clock's)",
                      ratio, kMinFitRatio, kMaxFitRatio);
        throw std::runtime_error(why);
    }
    if (method == stretch::Method::Rate || std::fabs(ratio - 1.0) < 1e-9) {
        // Linear interpolation around the cycle (pitch follows the rate).
        for (int c = 0; c < ch; ++c)
            for (int64_t j = 0; j < frames; ++j) {
                const double x = static_cast<double>(j) / ratio;
                const auto i = static_cast<int64_t>(std::floor(x));
                const auto f = static_cast<float>(x - static_cast<double>(i));
                out->channel(c)[j] = at(c, i) * (1.0f - f) + at(c, i + 1) * f;
            }
        return out;
    }
    constexpr int kFeed = 4096;
    auto st = stretch::Stretcher::create(method, ch, loop.sampleRate, kFeed, ratio, 1.0);
    if (!st) throw std::runtime_error("no stretcher for this method");
    st->prime(ratio, 1.0);
    // Input: `pre` frames of the loop's end, the loop, then the loop again (the stretcher's
    // latency is flushed by real audio, not silence).
    const int64_t pre = std::min<int64_t>(n, static_cast<int64_t>(loop.sampleRate));
    const int64_t total = pre + 2 * n;
    const auto first = static_cast<int64_t>(std::llround(static_cast<double>(pre) * ratio)); // where the loop's start lands
    std::vector<std::vector<float>> in(static_cast<size_t>(ch), std::vector<float>(kFeed));
    std::vector<std::vector<float>> got(static_cast<size_t>(ch), std::vector<float>(kFeed));
    std::vector<const float*> inPtr(static_cast<size_t>(ch));
    std::vector<float*> outPtr(static_cast<size_t>(ch));
    int64_t fed = 0, produced = -static_cast<int64_t>(st->startDelay());
    int idle = 0;
    while (produced < first + frames) {
        const int want = std::max(0, std::min<int>(st->inputWanted(), kFeed));
        if (want > 0) {
            const int k = static_cast<int>(std::min<int64_t>(want, std::max<int64_t>(0, total - fed)));
            for (int c = 0; c < ch; ++c) {
                for (int i = 0; i < want; ++i) in[static_cast<size_t>(c)][static_cast<size_t>(i)] = i < k ? at(c, fed + i - pre) : 0.0f;
                inPtr[static_cast<size_t>(c)] = in[static_cast<size_t>(c)].data();
            }
            st->feed(inPtr.data(), want);
            fed += want;
        }
        bool any = false;
        while (st->available() > 0) {
            for (int c = 0; c < ch; ++c) outPtr[static_cast<size_t>(c)] = got[static_cast<size_t>(c)].data();
            const int r = st->retrieve(outPtr.data(), kFeed);
            if (r <= 0) break;
            any = true;
            for (int i = 0; i < r; ++i) {
                const int64_t j = produced + i - first;
                if (j >= 0 && j < frames)
                    for (int c = 0; c < ch; ++c) out->channel(c)[j] = got[static_cast<size_t>(c)][static_cast<size_t>(i)];
            }
            produced += r;
        }
        idle = any || want > 0 ? 0 : idle + 1;
        if (idle > 1000 || fed > total + 64 * static_cast<int64_t>(kFeed)) throw std::runtime_error("the stretcher stopped giving output");
    }
    return out;
}

} // namespace loopd::library
