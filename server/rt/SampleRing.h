#pragma once
// Lock-free SPSC ring of interleaved float frames, for streaming audio between the audio thread
// and a disk thread. Allocates once at construction; write/read never block or allocate.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>

namespace loopd {

class SampleRing {
public:
    // [control|worker]
    SampleRing(size_t capacityFrames, int numChannels)
        : channels_(numChannels), capFrames_(capacityFrames + 1),
          data_(std::make_unique<float[]>((capacityFrames + 1) * static_cast<size_t>(numChannels))) {}

    int numChannels() const noexcept { return channels_; }

    // [producer] Writes up to numFrames planar frames (ch[c] + offset); returns frames written.
    size_t writePlanar(const float* const* ch, int offset, size_t numFrames, int available) noexcept {
        const size_t w = write_.load(std::memory_order_relaxed);
        const size_t r = read_.load(std::memory_order_acquire);
        const size_t space = (r + capFrames_ - w - 1) % capFrames_;
        const size_t n = std::min(space, numFrames);
        // Two straight runs (before and after the wrap), channel by channel.
        const size_t first = std::min(n, capFrames_ - w);
        const auto C = static_cast<size_t>(channels_);
        for (int c = 0; c < channels_; ++c) {
            const float* src = c < available && ch[c] ? ch[c] + offset : nullptr;
            float* d = data_.get() + w * C + static_cast<size_t>(c);
            for (size_t i = 0; i < first; ++i) d[i * C] = src ? src[i] : 0.0f;
            d = data_.get() + static_cast<size_t>(c);
            for (size_t i = first; i < n; ++i) d[(i - first) * C] = src ? src[i] : 0.0f;
        }
        write_.store((w + n) % capFrames_, std::memory_order_release);
        return n;
    }

    // Zero-copy access for the stretch rings: the contiguous run of frames (up to the wrap) the
    // producer may fill at `at` / the consumer may read at `at`, then commit what was used.
    // [producer]
    size_t writeRegion(float*& at) noexcept {
        const size_t w = write_.load(std::memory_order_relaxed);
        const size_t r = read_.load(std::memory_order_acquire);
        at = data_.get() + w * static_cast<size_t>(channels_);
        return std::min((r + capFrames_ - w - 1) % capFrames_, capFrames_ - w);
    }
    void commitWrite(size_t frames) noexcept {
        write_.store((write_.load(std::memory_order_relaxed) + frames) % capFrames_, std::memory_order_release);
    }
    // [consumer]
    size_t readRegion(const float*& at) noexcept {
        const size_t r = read_.load(std::memory_order_relaxed);
        const size_t w = write_.load(std::memory_order_acquire);
        at = data_.get() + r * static_cast<size_t>(channels_);
        return std::min((w + capFrames_ - r) % capFrames_, capFrames_ - r);
    }
    void commitRead(size_t frames) noexcept {
        read_.store((read_.load(std::memory_order_relaxed) + frames) % capFrames_, std::memory_order_release);
    }

    // [consumer] Reads up to maxFrames frames into planar out[0 .. numChannels()-1]; returns
    // frames read.
    size_t readPlanar(float* const* out, size_t maxFrames) noexcept {
        const size_t r = read_.load(std::memory_order_relaxed);
        const size_t w = write_.load(std::memory_order_acquire);
        const size_t n = std::min((w + capFrames_ - r) % capFrames_, maxFrames);
        const size_t first = std::min(n, capFrames_ - r);
        deinterleave(data_.get() + r * static_cast<size_t>(channels_), out, 0, first);
        deinterleave(data_.get(), out, first, n - first);
        read_.store((r + n) % capFrames_, std::memory_order_release);
        return n;
    }

    // [consumer] Drops up to maxFrames frames unread; returns frames dropped.
    size_t skip(size_t maxFrames) noexcept {
        const size_t r = read_.load(std::memory_order_relaxed);
        const size_t w = write_.load(std::memory_order_acquire);
        const size_t n = std::min((w + capFrames_ - r) % capFrames_, maxFrames);
        read_.store((r + n) % capFrames_, std::memory_order_release);
        return n;
    }

    // [consumer] Reads up to maxFrames interleaved frames into out; returns frames read.
    size_t read(float* out, size_t maxFrames) noexcept {
        const size_t r = read_.load(std::memory_order_relaxed);
        const size_t w = write_.load(std::memory_order_acquire);
        const size_t avail = (w + capFrames_ - r) % capFrames_;
        const size_t n = std::min(avail, maxFrames);
        const auto C = static_cast<size_t>(channels_);
        const size_t first = std::min(n, capFrames_ - r);
        std::copy_n(data_.get() + r * C, first * C, out);
        std::copy_n(data_.get(), (n - first) * C, out + first * C);
        read_.store((r + n) % capFrames_, std::memory_order_release);
        return n;
    }

    size_t writableFrames() const noexcept {
        const size_t r = read_.load(std::memory_order_acquire);
        const size_t w = write_.load(std::memory_order_acquire);
        return (r + capFrames_ - w - 1) % capFrames_;
    }

    size_t readableFrames() const noexcept {
        const size_t r = read_.load(std::memory_order_acquire);
        const size_t w = write_.load(std::memory_order_acquire);
        return (w + capFrames_ - r) % capFrames_;
    }

private:
    void deinterleave(const float* src, float* const* out, size_t at, size_t n) const noexcept {
        if (channels_ == 2) {
            float* __restrict l = out[0] + at;
            float* __restrict rr = out[1] + at;
            for (size_t i = 0; i < n; ++i) { l[i] = src[2 * i]; rr[i] = src[2 * i + 1]; }
            return;
        }
        const auto C = static_cast<size_t>(channels_);
        for (size_t c = 0; c < C; ++c)
            for (size_t i = 0; i < n; ++i) out[c][at + i] = src[i * C + c];
    }
    const int channels_;
    const size_t capFrames_;
    std::unique_ptr<float[]> data_;
    alignas(64) std::atomic<size_t> write_{0};
    alignas(64) std::atomic<size_t> read_{0};
};

} // namespace loopd
