#include "stretch/OfflineStretch.h"

#include <rubberband/RubberBandStretcher.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace loopd::stretch {

namespace {

constexpr int kChunk = 8192;

using Planar = std::vector<std::vector<float>>;

void report(const std::function<void(double)>& progress, double fraction) {
    if (progress) progress(std::clamp(fraction, 0.0, 1.0));
}

// Rubber Band offline: study the whole clip, then process it. Threading off: `loopd sections
// --jobs` is the parallelism, and one clip always gives the same output.
Planar rubberBand(bool finer, const std::vector<const float*>& in, int64_t frames, double sampleRate, double ratio,
                  const std::function<void(double)>& progress) {
    using RB = RubberBand::RubberBandStretcher;
    const int channels = static_cast<int>(in.size());
    // R2 as the real-time voices run it: "mixed" transients with the short window. Its default
    // (crisp, standard window) doubled every click of a click track (29 onsets for 16 beats,
    // aubio onset); mixed + short gives one onset per click, though R2 smears a broadband click
    // 2-6 ms early at -20 dB (no option set did better; tests/e2e/test_sections.py). R3 finds
    // transients itself: its clicks land within 2 ms (pre-echo up to 5 ms early, 40 dB down).
    RB::Options options = RB::OptionProcessOffline | RB::OptionThreadingNever |
                          (finer ? RB::OptionEngineFiner
                                 : RB::OptionEngineFaster | RB::OptionTransientsMixed | RB::OptionWindowShort);
    RB rb(static_cast<size_t>(std::lround(sampleRate)), static_cast<size_t>(channels), options, ratio, 1.0);
    rb.setExpectedInputDuration(static_cast<size_t>(frames));
    rb.setMaxProcessSize(kChunk);
    std::vector<const float*> ptr(static_cast<size_t>(channels));
    auto at = [&](int64_t offset) {
        for (int c = 0; c < channels; ++c) ptr[static_cast<size_t>(c)] = in[static_cast<size_t>(c)] + offset;
        return ptr.data();
    };
    // Studying is cheap next to processing: a tenth of the bar.
    for (int64_t off = 0; off < frames; off += kChunk) {
        const int64_t n = std::min<int64_t>(kChunk, frames - off);
        rb.study(at(off), static_cast<size_t>(n), off + n >= frames);
        report(progress, 0.1 * static_cast<double>(off + n) / static_cast<double>(frames));
    }
    Planar out(static_cast<size_t>(channels));
    const auto expected = static_cast<size_t>(std::llround(static_cast<double>(frames) * ratio));
    for (auto& ch : out) ch.reserve(expected + kChunk);
    Planar scratch(static_cast<size_t>(channels), std::vector<float>(kChunk));
    std::vector<float*> scratchPtr(static_cast<size_t>(channels));
    for (int c = 0; c < channels; ++c) scratchPtr[static_cast<size_t>(c)] = scratch[static_cast<size_t>(c)].data();
    auto drain = [&] {
        for (int av = rb.available(); av > 0; av = rb.available()) {
            const size_t got = rb.retrieve(scratchPtr.data(), static_cast<size_t>(std::min(av, kChunk)));
            if (got == 0) break;
            for (int c = 0; c < channels; ++c)
                out[static_cast<size_t>(c)].insert(out[static_cast<size_t>(c)].end(), scratch[static_cast<size_t>(c)].begin(),
                                                   scratch[static_cast<size_t>(c)].begin() + static_cast<std::ptrdiff_t>(got));
        }
    };
    for (int64_t off = 0; off < frames; off += kChunk) {
        const int64_t n = std::min<int64_t>(kChunk, frames - off);
        rb.process(at(off), static_cast<size_t>(n), off + n >= frames);
        drain();
        report(progress, 0.1 + 0.9 * static_cast<double>(off + n) / static_cast<double>(frames));
    }
    drain(); // after the final block everything is ready (no threads): available() then says -1
    return out;
}

// SoundTouch through the real-time engine (server/engine's voices use the same settings): feed
// the clip, then silence until the tail is out, and drop the engine's start delay.
Planar wsola(const std::vector<const float*>& in, int64_t frames, double sampleRate, double ratio,
             const std::function<void(double)>& progress) {
    const int channels = static_cast<int>(in.size());
    auto st = Stretcher::create(Method::Wsola, channels, sampleRate, kChunk, ratio, 1.0);
    st->prime(ratio, 1.0);
    const auto expected = static_cast<int64_t>(std::llround(static_cast<double>(frames) * ratio));
    int64_t toDrop = st->startDelay();
    Planar out(static_cast<size_t>(channels));
    for (auto& ch : out) ch.reserve(static_cast<size_t>(expected) + kChunk);
    Planar scratch(static_cast<size_t>(channels), std::vector<float>(kChunk));
    std::vector<float*> scratchPtr(static_cast<size_t>(channels));
    for (int c = 0; c < channels; ++c) scratchPtr[static_cast<size_t>(c)] = scratch[static_cast<size_t>(c)].data();
    std::vector<float> zeros(kChunk, 0.0f);
    std::vector<const float*> ptr(static_cast<size_t>(channels));
    int64_t fed = 0;
    int64_t silence = 0;
    while (static_cast<int64_t>(out[0].size()) < expected) {
        const int want = st->inputWanted();
        if (fed < frames) {
            const int n = static_cast<int>(std::min<int64_t>(want, frames - fed));
            for (int c = 0; c < channels; ++c) ptr[static_cast<size_t>(c)] = in[static_cast<size_t>(c)] + fed;
            st->feed(ptr.data(), n);
            fed += n;
            report(progress, static_cast<double>(fed) / static_cast<double>(frames));
        } else {
            if (static_cast<double>(silence) > 4.0 * sampleRate + 4.0 * kChunk) break; // the engine gives no more: pad below
            for (int c = 0; c < channels; ++c) ptr[static_cast<size_t>(c)] = zeros.data();
            st->feed(ptr.data(), want);
            silence += want;
        }
        for (int av = st->available(); av > 0; av = st->available()) {
            const int got = st->retrieve(scratchPtr.data(), std::min(av, kChunk));
            if (got <= 0) break;
            const int skip = static_cast<int>(std::min<int64_t>(toDrop, got));
            toDrop -= skip;
            for (int c = 0; c < channels; ++c)
                out[static_cast<size_t>(c)].insert(out[static_cast<size_t>(c)].end(), scratch[static_cast<size_t>(c)].begin() + skip,
                                                   scratch[static_cast<size_t>(c)].begin() + got);
        }
    }
    return out;
}

} // namespace

std::vector<std::vector<float>> stretchWhole(Method method, const std::vector<const float*>& in, int64_t frames,
                                             double sampleRate, double timeRatio,
                                             const std::function<void(double)>& progress) {
    if (in.empty() || frames <= 0) throw std::invalid_argument("nothing to stretch");
    if (!(timeRatio >= 1.0 / 16.0 && timeRatio <= 16.0))
        throw std::invalid_argument("time ratio " + std::to_string(timeRatio) + " is outside 1/16..16");
    report(progress, 0.0);
    Planar out;
    switch (method) {
    case Method::Rb2: out = rubberBand(false, in, frames, sampleRate, timeRatio, progress); break;
    case Method::Rb3: out = rubberBand(true, in, frames, sampleRate, timeRatio, progress); break;
    case Method::Wsola: out = wsola(in, frames, sampleRate, timeRatio, progress); break;
    case Method::Rate: throw std::invalid_argument("varispeed is no stretch (the pitch would move): rb3, rb2 or wsola");
    }
    // Exactly the promised length (the engines round their last hop their own way).
    const auto expected = static_cast<size_t>(std::llround(static_cast<double>(frames) * timeRatio));
    for (auto& ch : out) ch.resize(expected, 0.0f);
    report(progress, 1.0);
    return out;
}

} // namespace loopd::stretch
