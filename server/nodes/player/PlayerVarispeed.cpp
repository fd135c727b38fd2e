// The player's varispeed reader (Player.h): the read position advanced by rate x tempo factor,
// 4-point Hermite interpolation, loop wrap and one-shot end, and the beat lock of a varispeed
// follower (the read rate trimmed so that each range lands on the clock's beats).
#include "server/nodes/player/Player.h"

#include "server/engine/Engine.h"

#include <algorithm>
#include <cmath>

#include "dsp/Interpolate.h"
#include "dsp/Pan.h"
#include "server/engine/BufferData.h"

namespace loopd {

namespace {
inline float at(const float* x, int64_t n, bool loop, int64_t idx) noexcept {
    if (idx >= 0 && idx < n) return x[idx];
    if (!loop) return 0.0f;
    idx %= n;
    return x[idx < 0 ? idx + n : idx];
}
} // namespace

double Player::lockedTempoFactor(ProcessContext& ctx, int from, int to, double frames) noexcept {
    const double tf = tempoFactor(ctx);
    if (!follow_ || !ctx.players.followTempo || rate_.ramping() || to <= from) { relock_ = true; return tf; }
    const int64_t at = ctx.blockStartSample + from;
    if (relock_ || lockEpoch_ != ctx.clockEpoch) {
        lockEpoch_ = ctx.clockEpoch;
        lockBeats_ = ctx.beatsAt(at);
        lockPos_ = position();
        lockRate_ = rate_.value();
        relock_ = false;
        return tf;
    }
    // Position error against the grid, wrapped for loops.
    double e = position() - (lockPos_ + idealSource(ctx, at));
    if (loop_ && frames > 0) {
        e = std::fmod(e, frames);
        if (e > frames / 2) e -= frames;
        if (e < -frames / 2) e += frames;
    }
    if (std::fabs(e) < 1e-6) return tf; // on the grid (keeps rate-1 material bit-exact)
    const double nominal = rate_.value() * tf;
    const double corrected = std::clamp(nominal - e / (to - from), nominal * 0.98, nominal * 1.02);
    return corrected / rate_.value();
}

void Player::renderRange(ProcessContext& ctx, Bus& bus, int from, int to) noexcept {
    const BufferData* b = ctx.buffer(buf_);
    if (outMask_ == 0 || !b || b->numChannels != 1 || !ctx.scratch) {
        renderRangeTo(ctx, bus, from, to);
        return;
    }
    // A mono source mapped onto several outputs: render once into the scratch block (as a
    // one-channel bus, no pan), then add it to every channel of the mask at full level.
    std::fill(ctx.scratch + from, ctx.scratch + to, 0.0f);
    Bus mono;
    mono.ch[0] = ctx.scratch;
    mono.numChannels = 1;
    const int savedOut = out_;
    out_ = 0;
    renderRangeTo(ctx, mono, from, to);
    out_ = savedOut;
    for (int c = 0; c < bus.numChannels && c < 32; ++c) {
        if (!(outMask_ & (1u << c))) continue;
        for (int i = from; i < to; ++i) bus.ch[c][i] += ctx.scratch[i];
    }
}

void Player::renderRangeTo(ProcessContext& ctx, Bus& bus, int from, int to) noexcept {
    if (from >= to || state_ == State::Ended) return;
    if (voice_) { renderStretched(ctx, bus, from, to); return; }
    const BufferData* b = ctx.buffer(buf_);
    if (!b || b->numFrames <= 0 || b->numChannels <= 0) {
        if (buf_ >= 0) { ctx.report.bufferMissing = true; ctx.report.missingBuffer = buf_; }
        // Keep the envelopes moving so that fades and releases still complete.
        const int64_t n = to - from;
        gain_.skip(n); pan_.skip(n); rate_.skip(n); mute_.skip(n); env_.skip(n); soloGain_.skip(n);
        return;
    }
    const int64_t F = b->numFrames;
    const int srcCh = std::min(b->numChannels, kMaxChannels);
    const bool mono = srcCh == 1;
    const bool toPair = out_ + 1 < bus.numChannels;
    // Output channel k of the source goes to bus channel out_+k.
    const float* src[kMaxChannels];
    for (int c = 0; c < srcCh; ++c) src[c] = b->channel(c);

    const bool staticGains = !gain_.ramping() && !pan_.ramping() && !mute_.ramping() && envelopeStatic();
    const bool staticRate = !rate_.ramping();
    const double tf = lockedTempoFactor(ctx, from, to, static_cast<double>(F));
    dsp::StereoGains pg = mono ? dsp::constantPowerPan(pan_.value()) : dsp::balance(pan_.value());

    int i = from;
    // Fast path: exact copy at rate 1 from an integer position with constant gains.
    if (staticGains && staticRate && rate_.value() * tf == 1.0 && frac_ == 0.0 && idx_ >= 0 && idx_ < F) {
        const float g = gain_.value() * mute_.value() * envelopeValue();
        while (i < to) {
            const int64_t p = idx_;
            const int n = static_cast<int>(std::min<int64_t>(to - i, F - p));
            if (mono) {
                const float* x = src[0] + p;
                if (toPair) {
                    float* L = bus.ch[out_] + i; float* R = bus.ch[out_ + 1] + i;
                    const float gl = g * pg.left, gr = g * pg.right;
                    for (int k = 0; k < n; ++k) { L[k] += gl * x[k]; R[k] += gr * x[k]; }
                } else {
                    float* L = bus.ch[out_] + i;
                    for (int k = 0; k < n; ++k) L[k] += g * x[k];
                }
            } else if (srcCh == 2 && toPair) {
                // Stereo to a pair: one pass (the source never overlaps the bus).
                const float* __restrict x0 = src[0] + p;
                const float* __restrict x1 = src[1] + p;
                float* __restrict L = bus.ch[out_] + i;
                float* __restrict R = bus.ch[out_ + 1] + i;
                const float gl = g * pg.left, gr = g * pg.right;
                for (int k = 0; k < n; ++k) { L[k] += gl * x0[k]; R[k] += gr * x1[k]; }
            } else {
                for (int c = 0; c < srcCh && out_ + c < bus.numChannels; ++c) {
                    const float gc = g * (c == 0 ? pg.left : c == 1 ? pg.right : 1.0f);
                    const float* x = src[c] + p;
                    float* y = bus.ch[out_ + c] + i;
                    for (int k = 0; k < n; ++k) y[k] += gc * x[k];
                }
            }
            i += n;
            idx_ += n;
            if (idx_ >= F) {
                if (loop_) idx_ -= F;
                else { endNow(ctx, ctx.blockStartSample + i); return; }
            }
        }
        return;
    }

    // Fast path: constant gains and rate. Runs of frames whose four taps lie inside the buffer
    // go through a branch-free Hermite loop; the frames at the edges (wrap, end) take the
    // general step one at a time.
    if (staticGains && staticRate) {
        const double r = rate_.value() * tf;
        const float g = gain_.value() * mute_.value() * envelopeValue();
        const double lastInterior = static_cast<double>(F - 3); // i0 + 2 <= F - 1
        while (i < to) {
            int n = 0;
            const double pos = position();
            if (idx_ >= 1 && pos <= lastInterior) {
                // Conservative: stops one step early, so the run never reaches an edge tap.
                const double room = r > 0 ? (lastInterior - pos) / r : r < 0 ? (pos - 1.0) / -r : 1e18;
                n = static_cast<int>(std::min<double>(to - i, std::floor(room)));
            }
            if (n > 0) {
                interpolateRun(bus, src, srcCh, i, n, r, g, pg);
                i += n;
                continue;
            }
            if (!step(ctx, bus, src, srcCh, F, i, r, g, pg)) return;
            ++i;
        }
        return;
    }

    // General path: per-sample ramps and Hermite interpolation.
    for (; i < to; ++i) {
        const float g = gain_.next() * mute_.next() * nextEnvelope();
        if (pan_.ramping()) {
            const float p = pan_.next();
            pg = mono ? dsp::constantPowerPan(p) : dsp::balance(p);
        }
        const double r = (staticRate ? rate_.value() : rate_.next()) * tf;
        if (!step(ctx, bus, src, srcCh, F, i, r, g, pg)) return;
    }
}

void Player::interpolateRun(Bus& bus, const float* const* src, int srcCh, int i, int n, double r, float g,
                            dsp::StereoGains pg) noexcept {
    const bool pair = out_ + 1 < bus.numChannels;
    while (n > 0) {
        anchorFor(r);
        const int m = static_cast<int>(std::min<int64_t>(n, dsp::kVarispeedRebaseSteps - aSteps_));
        dsp::VarispeedRun run;
        run.index = idx_;
        run.anchorFrac = aFrac_;
        run.steps = aSteps_;
        run.rateFrac = aRateFrac_;
        run.rateWhole = aRateWhole_;
        run.frames = m;
        if (srcCh <= 2 && pair) {
            // Mono to a pair (panned), or stereo (balanced): one pass.
            run.sources = srcCh;
            run.src[0] = src[0];
            run.src[1] = srcCh == 2 ? src[1] : nullptr;
            run.dst[0] = bus.ch[out_] + i;
            run.dst[1] = bus.ch[out_ + 1] + i;
            run.gain[0] = g * pg.left;
            run.gain[1] = g * pg.right;
            dsp::varispeedRun(run);
        } else {
            // Each channel to its own output (one channel alone, or more than two).
            for (int c = 0; c < srcCh && out_ + c < bus.numChannels; ++c) {
                run.src[0] = src[c];
                run.dst[0] = bus.ch[out_ + c] + i;
                run.gain[0] = srcCh == 1 ? g : g * (c == 0 ? pg.left : c == 1 ? pg.right : 1.0f);
                dsp::varispeedRun(run);
            }
        }
        stepAnchored(m);
        i += m;
        n -= m;
    }
}

bool Player::step(ProcessContext& ctx, Bus& bus, const float* const* src, int srcCh, int64_t F, int i, double r,
                  float g, dsp::StereoGains pg) noexcept {
    const bool mono = srcCh == 1;
    const bool toPair = out_ + 1 < bus.numChannels;
    const int64_t i0 = idx_;
    const float frac = static_cast<float>(frac_);
    const bool interior = i0 >= 1 && i0 + 2 < F;
    const dsp::Hermite4Weights w(frac);
    for (int c = 0; c < srcCh; ++c) {
        const float* x = src[c];
        float s;
        if (frac == 0.0f) {
            s = at(x, F, loop_, i0);
        } else if (interior) {
            s = w(x + i0);
        } else {
            const float taps[4] = {at(x, F, loop_, i0 - 1), at(x, F, loop_, i0), at(x, F, loop_, i0 + 1), at(x, F, loop_, i0 + 2)};
            s = w(taps + 1);
        }
        if (mono) {
            if (toPair) { bus.ch[out_][i] += g * pg.left * s; bus.ch[out_ + 1][i] += g * pg.right * s; }
            else bus.ch[out_][i] += g * s;
        } else if (out_ + c < bus.numChannels) {
            bus.ch[out_ + c][i] += g * s * (c == 0 ? pg.left : c == 1 ? pg.right : 1.0f);
        }
    }
    advance(r);
    if (idx_ >= F || idx_ < 0) {
        if (!loop_) {
            endNow(ctx, ctx.blockStartSample + i + 1);
            return false;
        }
        idx_ %= F;
        if (idx_ < 0) idx_ += F;
    }
    return true;
}

} // namespace loopd
