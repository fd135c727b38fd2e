#pragma once
// Always-on recording of the live input: the engine writes every block of every input channel
// here before anything renders, so "what was just played" is never lost. Loopers read it to
// record (with latency compensation: they read the past), to capture the last cycles
// retroactively and to crossfade a loop's end with the audio that preceded its start.
//
// Threads: constructed on the control thread (allocates); write/read only on the audio thread.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>

namespace loopd {

class CaptureRing {
public:
    // [control] At least `frames` of history per channel (rounded up to a power of two).
    // `touch`: write every page now (real time: the audio thread must not fault them in; 60 s of
    // stereo is 32 MiB). Offline the pages come zeroed from the kernel when first written, which
    // saves an nrt render a tenth of a second of start-up.
    CaptureRing(int channels, int64_t frames, bool touch = true) : channels_(std::max(1, channels)) {
        int64_t cap = 1;
        while (cap < std::max<int64_t>(frames, 1024)) cap <<= 1;
        mask_ = cap - 1;
        const size_t n = static_cast<size_t>(cap) * static_cast<size_t>(channels_);
        data_.reset(static_cast<float*>(std::calloc(n, sizeof(float))));
        if (!data_) throw std::bad_alloc();
        if (touch) std::fill(data_.get(), data_.get() + n, 0.0f);
    }
    CaptureRing(const CaptureRing&) = delete;
    CaptureRing& operator=(const CaptureRing&) = delete;

    int channels() const noexcept { return channels_; }
    int64_t capacity() const noexcept { return mask_ + 1; }
    // Absolute sample time one past the newest frame written.
    int64_t end() const noexcept { return end_; }
    // The oldest absolute sample time still held.
    int64_t begin() const noexcept { return std::max<int64_t>(0, end_ - capacity()); }

    // [audio] Append planar frames in[c][0..n) for absolute times [at, at+n). `at` must be end().
    void write(const float* const* in, int numInputs, int64_t at, int n) noexcept {
        // Digital silence (no input, an unplugged one) over slots that hold only silence is not
        // written again: the slots of [at, at+n) last held [at-cap, at+n-cap), all silent when
        // the last sound ended before at-cap. An idle server (and an nrt render without input,
        // whose pages would otherwise all be faulted in) stores nothing.
        bool silent = true;
        for (int c = 0; c < channels_ && c < numInputs && silent; ++c)
            if (in[c]) {
                int loud = 0;
                for (int i = 0; i < n; ++i) loud |= static_cast<int>(in[c][i] != 0.0f);
                silent = loud == 0;
            }
        if (silent && loudUntil_ <= at - capacity()) { end_ = at + n; return; }
        if (!silent) loudUntil_ = at + n;
        // In runs up to the wrap, channel by channel.
        const auto C = static_cast<size_t>(channels_);
        for (int done = 0; done < n;) {
            const int64_t slot = (at + done) & mask_;
            const int run = static_cast<int>(std::min<int64_t>(n - done, mask_ + 1 - slot));
            float* f = data_.get() + static_cast<size_t>(slot) * C;
            for (int c = 0; c < channels_; ++c) {
                float* d = f + c;
                if (c < numInputs && in[c]) {
                    const float* x = in[c] + done;
                    for (int i = 0; i < run; ++i) d[static_cast<size_t>(i) * C] = x[i];
                } else {
                    for (int i = 0; i < run; ++i) d[static_cast<size_t>(i) * C] = 0.0f;
                }
            }
            done += run;
        }
        end_ = at + n;
    }

    // [audio] Input channel c at absolute time t; 0 outside what is held.
    float read(int64_t t, int c) const noexcept {
        if (t < begin() || t >= end_ || c < 0 || c >= channels_) return 0.0f;
        return data_[static_cast<size_t>(t & mask_) * static_cast<size_t>(channels_) + static_cast<size_t>(c)];
    }
    bool holds(int64_t t) const noexcept { return t >= begin() && t < end_; }

private:
    int channels_;
    int64_t mask_ = 0;
    int64_t end_ = 0;
    int64_t loudUntil_ = std::numeric_limits<int64_t>::min() / 4; // one past the last block with sound
    struct Free { void operator()(float* p) const noexcept { std::free(p); } };
    std::unique_ptr<float[], Free> data_;
};

} // namespace loopd
