#pragma once
// Where a stretched player's output stands in its source. Every chunk handed to the stretcher is
// queued with the speed it was fed at (source frames per output frame: it becomes `frames`
// output frames); taking output off pops the queue, so `source()` is the source position of the
// next output frame — counted, not estimated from what the engine held once (that estimate was
// biased by the engines' chunking: Rubber Band R3 one-shots ran 1.8 % long).
//
// Threads: the thread that renders the player (audio); fixed size, never allocates.
#include <algorithm>

namespace loopd {

class OutputLedger {
public:
    // A new playback: nothing queued, nothing come out.
    void reset() noexcept { head_ = count_ = 0; source_ = 0.0; }
    // `frames` output frames to come, made at `speed` (0: padding after a one-shot's end).
    void queue(double frames, double speed) noexcept {
        if (frames <= 0.0) return;
        if (count_ > 0) {
            Segment& tail = segs_[(head_ + count_ - 1) % kMax];
            // Same speed, or no room left: extend the newest segment.
            if (tail.speed == speed || count_ == kMax) { tail.out += frames; return; }
        }
        segs_[(head_ + count_) % kMax] = Segment{frames, speed};
        ++count_;
    }
    // `frames` output frames came out; beyond what was queued (rounding) they count at `speed`.
    void consume(double frames, double speed) noexcept {
        while (frames > 0.0 && count_ > 0) {
            Segment& head = segs_[head_];
            const double take = std::min(frames, head.out);
            source_ += take * head.speed;
            head.out -= take;
            frames -= take;
            if (head.out <= 1e-9) { head_ = (head_ + 1) % kMax; --count_; }
        }
        if (frames > 0.0) source_ += frames * speed;
    }
    // Source frames come out since the playback began (where the output stands).
    double source() const noexcept { return source_; }
    // The output stands elsewhere (a varispeed took over and moved on).
    void setSource(double s) noexcept { source_ = s; }
    // Each queued segment, oldest first: f(outputFrames, speed).
    template <class F>
    void forEachQueued(F&& f) const noexcept {
        for (int k = 0; k < count_; ++k) {
            const Segment& s = segs_[(head_ + k) % kMax];
            f(s.out, s.speed);
        }
    }
    int queued() const noexcept { return count_; }
    static constexpr int kMax = 512;

private:
    struct Segment { double out; double speed; };
    Segment segs_[kMax] = {};
    int head_ = 0, count_ = 0;
    double source_ = 0.0;
};

} // namespace loopd
