// The player's stretched playback (Player.h): the stretch voice primed, fed ahead and read
// (real time: stepped by a stretch thread; offline: stepped here), the output ledger, catching up
// with the beat grid, the Smith-predictor beat lock, the underrun cover and its splices, and
// load shedding (shed to varispeed, rejoin).
#include "server/nodes/player/Player.h"

#include "server/engine/Engine.h"

#include <algorithm>
#include <cmath>

#include "dsp/Interpolate.h"
#include "dsp/Pan.h"
#include "server/engine/BufferData.h"

namespace loopd {

void Player::primeVoice(ProcessContext& ctx, double speed, bool fromStart, int64_t alignAt) noexcept {
    // Whoever steps the voice (the worker, or this thread offline) primes it on its next step.
    ledger_.reset();
    lockOutSrc_ = 0.0;
    voice_->timeRatio.store(1.0 / speed, std::memory_order_relaxed);
    voice_->pitchScale.store(std::exp2(pitchSemitones_ / 12.0), std::memory_order_relaxed);
    realPushed_ = 0;
    voice_->realPushed.store(0, std::memory_order_relaxed);
    primeGen_ = voice_->primeRequest.fetch_add(1, std::memory_order_release) + 1;
    outputStarted_ = false;
    voice_->playing.store(false, std::memory_order_relaxed);
    sourceDone_ = false;
    coverRunning_ = false;
    spliceLeft_ = 0;
    fadeInLeft_ = 0;
    shed_ = rejoin_ = lateStart_ = false;
    if (startFrac_ >= 0.0f && fromStart)
        if (const BufferData* b = ctx.buffer(buf_)) setPosition(std::floor(static_cast<double>(startFrac_) * static_cast<double>(b->numFrames)));
    if (fromStart && alignAt >= 0) alignStart(ctx, alignAt);
    startIdx_ = idx_;
}

void Player::followShedRequest(ProcessContext& ctx, const BufferData& b, double speed, int64_t at) noexcept {
    StretchVoice& v = *voice_;
    const bool request = v.shedRequest.load(std::memory_order_acquire);
    if (request && rejoin_) {
        // Shed again while rejoining: the varispeed is playing already (the cover, from where
        // it stands); it simply goes on, and the re-primed stretcher is left to the next restore.
        // (Waiting for the rejoin to end instead left the request unheeded for as long as the
        // worker produced nothing: the rejoin's one-second limit counts only from its output.)
        rejoin_ = lateStart_ = false;
        outputStarted_ = true;
        shed_ = true;
        ledger_.setSource(coverPos_ - static_cast<double>(startIdx_)); // where the output stands (the grid's view)
        v.shed.store(true, std::memory_order_release);
    } else if (request && !shed_) {
        // From this block on the cover plays (it starts where the output stands, matched to its
        // last frames, see renderStretched); the worker leaves the voice alone once told.
        if (!outputStarted_) {
            // Shed before its stretched output began: the varispeed starts it, a follower where
            // its grid stands by now (the grid began at its start).
            outputStarted_ = true;
            coverRunning_ = false;
            if (follow_ && ctx.players.followTempo && !relock_ && lockEpoch_ == ctx.clockEpoch)
                ledger_.setSource(std::max(0.0, lockOutSrc_ + idealSource(ctx, at)));
        }
        shed_ = true;
        v.shed.store(true, std::memory_order_release);
    } else if (!request && shed_) {
        const auto F = static_cast<double>(b.numFrames);
        double q = coverPos_;
        if (!loop_ && q >= F) return; // a one-shot with nothing left to stretch: it ends as it is
        if (loop_) { q = std::fmod(q, F); if (q < 0.0) q += F; }
        // Old output is dropped here (this thread reads it); old input is skipped by the worker
        // when it primes (this thread only writes it, the worker has not touched it since shed).
        while (v.output.skip(v.output.readableFrames()) > 0) {}
        v.inputSkip.store(static_cast<int64_t>(v.input.readableFrames()), std::memory_order_relaxed);
        setPosition(std::floor(q));
        primeVoice(ctx, speed, false); // publishes inputSkip with the prime request
        coverPos_ = q;                 // the varispeed plays on from here
        coverRunning_ = true;
        relock_ = true;                // a follower's grid: anchored here, where the varispeed stood on it
        rejoin_ = true;
        rejoinAt_ = at;
        v.shed.store(false, std::memory_order_release);
    }
}

bool Player::rejoin(ProcessContext& ctx, int64_t at, double speed, int n) noexcept {
    // The stretched output begins where the varispeed stood at the re-prime (a late start: where
    // the player began); the varispeed has moved on since: drop what it has passed (given up a
    // second after the varispeed began: the lock chases the rest).
    if (at - rejoinAt_ > static_cast<int64_t>(ctx.sampleRate)) return true;
    bool dropped = false;
    return dropPassedOutput(coverPos_ - static_cast<double>(startIdx_), 0.0, speed, n, dropped) < speed;
}

double Player::dropPassedOutput(double target, double offset, double speed, int n, bool& dropped) noexcept {
    StretchVoice& v = *voice_;
    for (;;) {
        const double lag = target - (ledger_.source() - offset); // source frames
        const int k = static_cast<int>(std::min<double>({lag / speed, static_cast<double>(n), static_cast<double>(v.output.readableFrames())}));
        if (k <= 0) return lag;
        v.output.skip(static_cast<size_t>(k));
        takeSegments();
        ledger_.consume(static_cast<double>(k), speed);
        dropped = true;
    }
}

void Player::takeSegments() noexcept {
    // What the stretcher was given, and at which speed (see StretchVoice::segments).
    for (StretchVoice::Segment seg; voice_->segments.tryPop(seg);)
        if (seg.generation == primeGen_) ledger_.queue(seg.out, seg.speed);
}

void Player::pushSource(const BufferData& b, int frames) noexcept {
    StretchVoice& v = *voice_;
    const int64_t F = b.numFrames;
    const float* srcL = b.channel(0);
    const float* srcR = b.channel(b.numChannels == 1 ? 0 : 1);
    frames = std::min({frames, kMaxPush, static_cast<int>(v.input.writableFrames())});
    // Straight into the ring (interleaved), in runs up to the ring's wrap and the source's end.
    int real = 0;
    for (int k = 0; k < frames;) {
        float* ring = nullptr;
        const int room = std::min(frames - k, static_cast<int>(v.input.writeRegion(ring)));
        for (int j = 0; j < room;) {
            if (idx_ >= F && loop_) idx_ -= F;
            if (idx_ >= 0 && idx_ < F) {
                const int run = static_cast<int>(std::min<int64_t>(room - j, F - idx_));
                const float* __restrict l = srcL + idx_;
                const float* __restrict r = srcR + idx_;
                float* __restrict d = ring + 2 * j;
                for (int i = 0; i < run; ++i) {
                    d[2 * i] = l[i];
                    d[2 * i + 1] = r[i];
                }
                idx_ += run;
                j += run;
                real += run;
                // The last real frame is in: from here `owed` counts down to its way out (the
                // engine may hold a lot of output, R3 ~2000 frames; waiting for it to ask for
                // more input before timing the end made one-shots 1.8 % long).
                if (idx_ >= F && !loop_) sourceDone_ = true;
            } else {
                ring[2 * j] = ring[2 * j + 1] = 0.0f;
                sourceDone_ = true;
                ++j;
            }
        }
        // realPushed (below) is published after the frames: the worker reads them in that order.
        v.input.commitWrite(static_cast<size_t>(room));
        k += room;
        if (room == 0) break;
    }
    realPushed_ += real;
    v.realPushed.store(realPushed_, std::memory_order_release);
}

void Player::fillAhead(const BufferData& b, double speed, int n) noexcept {
    StretchVoice& v = *voice_;
    const double inFlight = static_cast<double>(v.output.readableFrames()) + static_cast<double>(v.input.readableFrames()) / speed;
    double want = aheadTarget_ + n - inFlight;
    if (rejoin_) {
        // The varispeed plays until the stretched output catches up with it, and has moved on
        // from where the stretch began: the input must reach past it, by the fill target and
        // what the stretcher holds back (its start delay), for the output to get there.
        const double past = coverPos_ - static_cast<double>(startIdx_) - static_cast<double>(realPushed_);
        want = std::max(want, past / speed + aheadTarget_ + n + v.startDelay.load(std::memory_order_relaxed));
    }
    if (want > 0.0) pushSource(b, static_cast<int>(std::ceil(want * speed)));
}

void Player::adaptAhead(const ProcessContext& ctx, double ready, bool underrun, int n) noexcept {
    // The fill target follows the fill level: emergency (an underrun) doubles it; urgent (less
    // than a quarter of it was ready, at most once per 100 ms) raises it by a quarter; relaxed
    // (10 s with neither) lowers it by a quarter, but not under 2048 frames nor under three of
    // the worker's longest recent steps for this voice (its measured cost: R3 works in bursts).
    const double burstFrames = voice_->burstSeconds.load(std::memory_order_relaxed) * ctx.sampleRate;
    const double floor = std::min(8192.0, std::max(2048.0, 3.0 * burstFrames));
    sinceUrgent_ += n;
    if (underrun) {
        aheadTarget_ = std::min(aheadTarget_ * 2.0, 8192.0);
        cleanFrames_ = 0;
    } else if (ready < 0.25 * aheadTarget_ && sinceUrgent_ > static_cast<int64_t>(0.1 * ctx.sampleRate)) {
        aheadTarget_ = std::min(aheadTarget_ * 1.25, 8192.0);
        cleanFrames_ = 0;
        sinceUrgent_ = 0;
    } else if ((cleanFrames_ += n) > static_cast<int64_t>(10 * ctx.sampleRate)) {
        aheadTarget_ *= 0.75;
        cleanFrames_ = 0;
    }
    aheadTarget_ = std::max(aheadTarget_, floor);
}

bool Player::catchUp(ProcessContext& ctx, int64_t at, double speed, int n) noexcept {
    // (A worker that cannot get ahead of the grid: after kLateStartSeconds the varispeed starts
    // the player instead, see renderStretched.)
    bool dropped = false;
    const double lag = dropPassedOutput(idealSource(ctx, at), lockOutSrc_, speed, n, dropped);
    if (dropped) fadeInLeft_ = fadeLength(ctx);
    return lag < speed;
}

void Player::renderStretched(ProcessContext& ctx, Bus& bus, int from, int to) noexcept {
    const BufferData* b = ctx.buffer(buf_);
    const int64_t n64 = to - from;
    if (!b || b->numFrames <= 0 || b->numChannels <= 0) {
        if (buf_ >= 0) { ctx.report.bufferMissing = true; ctx.report.missingBuffer = buf_; }
        gain_.skip(n64); pan_.skip(n64); rate_.skip(n64); mute_.skip(n64); env_.skip(n64); soloGain_.skip(n64);
        return;
    }
    const int64_t F = b->numFrames;
    const bool mono = b->numChannels == 1;
    const float* srcL = b->channel(0);
    const float* srcR = b->channel(mono ? 0 : 1);
    // Material frames per output frame; the stretcher makes 1/speed output frames of each.
    double speed = stretchSpeed(ctx, ctx.tempoBpm);
    const int64_t at = ctx.blockStartSample + from;
    StretchVoice& v = *voice_;
    if (ctx.players.stretchAhead) followShedRequest(ctx, *b, speed, at);
    takeSegments();
    // The grid is anchored where the player began; real time, the output may start later (an
    // immediate start waits for the stretcher's first output): it then catches up (catchUp).
    const bool locked = follow_ && ctx.players.followTempo && !rate_.ramping();
    if (locked) {
        if (relock_ || lockEpoch_ != ctx.clockEpoch) {
            // (A clock reset moves the grid: take it from here rather than chase the jump.)
            lockEpoch_ = ctx.clockEpoch;
            lockBeats_ = ctx.beatsAt(at);
            lockRate_ = rate_.value();
            lockOutSrc_ = ledger_.source();
            relock_ = false;
        } else if (outputStarted_ || shed_) {
            // A Smith predictor: the stretcher's latency is outside the loop. What it already
            // holds plays at the speeds it was given, whatever is decided now; input handed
            // over now sounds once all of that is out. So the speed for it is the
            // tempo at that moment (tempo changes scheduled ahead are known: see TempoForecast),
            // trimmed by where the output will stand against the grid then; the error is
            // corrected over kLockSeconds of new input. After a tempo step this pulls back what
            // was in flight at the old speed at once, instead of waiting for it to show in the
            // output (it used to take a beat); a step timetagged ahead is not chased at all.
            // (Shed: the varispeed has nothing in flight, the speed set now plays now.)
            double src = ledger_.source() - lockOutSrc_, inFlight = 0.0;
            if (!shed_)
                ledger_.forEachQueued([&](double frames, double sp) {
                    src += frames * sp;
                    inFlight += frames;
                });
            // Source frames the stretcher has not been told a speed for yet: the speed set now
            // reaches the engine's held input too (R3 holds about 3/4 of its start delay before
            // a new ratio applies to it, see StretchVoice), so what sounds at the new speed
            // starts after the announced output plus what waits beyond that hold.
            if (!shed_) {
                const auto unannounced = static_cast<double>(realPushed_ - v.realFed.load(std::memory_order_acquire));
                const double ahead = std::max(0.0, unannounced - static_cast<double>(v.holdFrames.load(std::memory_order_relaxed)));
                src += ahead;
                inFlight += ahead / speed;
            }
            double bpmThen = 0.0;
            const double beatsThen = ctx.beatsAhead(at + static_cast<int64_t>(inFlight), bpmThen);
            const double nominal = stretchSpeed(ctx, bpmThen);
            const double e = src - idealSourceAtBeats(ctx, beatsThen);
            // A trim below 0.05 % is left out: Rubber Band R2 told a slightly different ratio
            // every block drifted 0.1 % from it (its hop rounding restarts on each change).
            constexpr double kLockSeconds = 0.05, kMaxTrim = 0.08, kDeadBand = 0.0005;
            const double trim = std::clamp(e / (kLockSeconds * ctx.sampleRate * nominal), -kMaxTrim, kMaxTrim);
            speed = nominal;
            if (std::fabs(trim) >= kDeadBand) speed = nominal * (1.0 - trim);
        }
    } else {
        relock_ = true;
    }
    rate_.skip(n64);
    v.timeRatio.store(1.0 / speed, std::memory_order_relaxed);
    v.pitchScale.store(std::exp2(pitchSemitones_ / 12.0), std::memory_order_relaxed);
    const int n = std::min(to - from, blockSize_);
    float* out[2] = {outBuf_.data(), outBuf_.data() + blockSize_};
    if (ctx.players.stretchAhead) {
        if (!shed_) fillAhead(*b, speed, n); // the worker does the stretching
    } else {
        // Offline: this thread steps the voice, pulled by what the block needs (deterministic).
        for (int guard = 0; static_cast<int>(v.output.readableFrames()) < n && guard < 256; ++guard) {
            v.step();
            if (static_cast<int>(v.output.readableFrames()) >= n) break;
            pushSource(*b, std::max(1, v.stretcher->inputWanted()));
        }
    }
    // Real time: start sounding once a pre-roll is buffered, so that the pipeline runs ahead
    // from the first block instead of limping through underruns while the worker fills it.
    bool preRolled = !shed_ && (outputStarted_ || !ctx.players.stretchAhead ||
                                static_cast<double>(v.output.readableFrames()) >= std::min(aheadTarget_, 1024.0));
    if (preRolled && !outputStarted_ && ctx.players.stretchAhead) {
        if (rejoin_) preRolled = rejoin(ctx, at, speed, n);
        else if (locked && !relock_) preRolled = catchUp(ctx, at, speed, n);
    }
    if (!preRolled && ctx.players.stretchAhead && !outputStarted_ && !shed_ && !rejoin_ && startedAt >= 0 &&
        at - startedAt >= static_cast<int64_t>(kLateStartSeconds * ctx.sampleRate)) {
        // The stretch thread has not delivered the first output (a follower's: caught up with
        // its grid) in time (it is busy, or gets little of a core): rather than silence, the
        // varispeed starts the player, a follower where its grid stands by now, and the
        // stretched output joins once it has caught up with the varispeed: a rejoin, without
        // the re-prime (the stretcher goes on from the start). Every block covered so is an
        // underrun (below): the thread's load shedding hears of it, and a thread that cannot
        // get its new players going sheds them.
        rejoin_ = lateStart_ = true;
        rejoinAt_ = at;
        coverRunning_ = false;
        coverPos_ = static_cast<double>(startIdx_);
        if (locked && !relock_) coverPos_ += std::max(0.0, lockOutSrc_ + idealSource(ctx, at));
        v.playing.store(true, std::memory_order_relaxed); // sounding: the worker serves it as such
    }
    const auto ready = static_cast<double>(v.output.readableFrames());
    const int got = preRolled ? static_cast<int>(v.output.readPlanar(out, static_cast<size_t>(n))) : 0;
    if (ctx.players.stretchAhead && outputStarted_ && !shed_) adaptAhead(ctx, ready, got < n, n);
    takeSegments(); // what the steps above handed over
    ledger_.consume(static_cast<double>(got), speed);
    // Real output still to come: what waits in the input ring at the current speed, plus what
    // the stretcher was given and has not put out.
    double owed = static_cast<double>(realPushed_ - v.realFed.load(std::memory_order_acquire)) / speed;
    ledger_.forEachQueued([&](double frames, double sp) {
        if (sp > 0.0) owed += frames;
    });
    // Varispeed plays where the stretched output is missing: an underrun, a shed voice, a voice
    // rejoining after it was shed or after a late start.
    const bool varispeed = outputStarted_ || shed_ || rejoin_;
    if (got < n && varispeed) {
        // Underrun: cover the rest with varispeed from where the stretched output stands (and
        // adaptAhead keeps more in flight from now on).
        if ((outputStarted_ || lateStart_) && !shed_) {
            ++ctx.report.stretchUnderruns;
            v.underruns.fetch_add(1, std::memory_order_relaxed);
        }
        // A cover that goes on over several blocks continues where it was; a new one starts
        // where the stretched output stands.
        // (A late start's first cover: where it was placed.)
        double p = (coverRunning_ && got == 0) || (lateStart_ && !coverRunning_) ? coverPos_
                                                                                  : static_cast<double>(startIdx_) + ledger_.source();
        const double Fd = static_cast<double>(F);
        auto tap = [&](const float* x, int64_t j) {
            if (loop_) { j %= F; if (j < 0) j += F; }
            return j >= 0 && j < F ? x[j] : 0.0f;
        };
        if (!(coverRunning_ && got == 0)) {
            // The stretcher's phases are its own: start the cover within +-64 source frames of
            // where the output stands, at the place that best continues the last two output
            // frames (value and slope), so that the splice below has little left to smooth.
            float y1[2], y2[2];
            for (int c = 0; c < 2; ++c) {
                y1[c] = got >= 1 ? out[c][got - 1] : lastOut_[c];
                y2[c] = got >= 2 ? out[c][got - 2] : got == 1 ? lastOut_[c] : prevOut_[c];
            }
            const float* src2[2] = {srcL, srcR};
            double best = 1e30, bestD = 0.0;
            for (int d = -64; d <= 64; ++d) {
                const auto j = static_cast<int64_t>(std::floor(p)) + d;
                double err = 0.0;
                for (int c = 0; c < 2; ++c) {
                    const float a = tap(src2[c], j), b2 = tap(src2[c], j + static_cast<int64_t>(std::lround(speed)));
                    const double ev = a - (2.0f * y1[c] - y2[c]), es = (b2 - a) / std::max(1.0, std::round(speed)) * speed - (y1[c] - y2[c]);
                    err += ev * ev + es * es;
                }
                if (err < best - 1e-12 || (err <= best + 1e-12 && std::abs(d) < std::fabs(bestD))) { best = err; bestD = d; }
            }
            p += bestD;
        }
        for (int k = got; k < n; ++k, p += speed) {
            double q = loop_ ? std::fmod(p, Fd) : p;
            if (q < 0) q += Fd;
            const auto i0 = static_cast<int64_t>(q);
            const dsp::Hermite4Weights w(static_cast<float>(q - static_cast<double>(i0)));
            float tl[4], tr[4];
            for (int t = 0; t < 4; ++t) {
                tl[t] = tap(srcL, i0 - 1 + t);
                tr[t] = tap(srcR, i0 - 1 + t);
            }
            out[0][k] = w(tl + 1);
            out[1][k] = w(tr + 1);
        }
        coverPos_ = p;
        if (shed_) ledger_.setSource(coverPos_ - static_cast<double>(startIdx_)); // where the output stands
    } else if (got < n) {
        // Before the first stretched frame (the worker's pre-roll): silence, not an underrun.
        std::fill(out[0] + got, out[0] + n, 0.0f);
        std::fill(out[1] + got, out[1] + n, 0.0f);
    }
    // Where the stretched output and the varispeed cover meet, the waveform would step (the
    // stretcher's phases are its own): the step is spread over 64 frames as a decaying offset.
    const bool covering = got < n && varispeed;
    if (varispeed && !covering && !coverRunning_ && spliceLeft_ == 0) {
        // Stretched output throughout, no splice under way: only remember the last two frames.
        for (int c = 0; c < 2; ++c) {
            prevOut_[c] = n >= 2 ? out[c][n - 2] : lastOut_[c];
            lastOut_[c] = out[c][n - 1];
        }
    } else if (varispeed) {
        for (int k = 0; k < n; ++k) {
            const bool coverHere = covering && k >= got;
            if ((k == 0 && coverHere != coverRunning_) || (k > 0 && k == got && coverHere)) {
                for (int c = 0; c < 2; ++c) spliceOffset_[c] = lastOut_[c] - out[c][k];
                spliceLeft_ = kSpliceFrames;
            }
            if (spliceLeft_ > 0) {
                const float w = static_cast<float>(spliceLeft_) / static_cast<float>(kSpliceFrames);
                for (int c = 0; c < 2; ++c) out[c][k] += spliceOffset_[c] * w;
                --spliceLeft_;
            }
            prevOut_[0] = lastOut_[0];
            prevOut_[1] = lastOut_[1];
            lastOut_[0] = out[0][k];
            lastOut_[1] = out[1][k];
        }
    }
    coverRunning_ = covering;
    if (got > 0 && !outputStarted_) {
        outputStarted_ = true;
        rejoin_ = lateStart_ = false;
        v.playing.store(true, std::memory_order_relaxed);
    }
    // Shed, a one-shot's real output left is what the varispeed has not read yet.
    int played = got;
    if (shed_) {
        played = n;
        if (!loop_) {
            sourceDone_ = true;
            owed = std::max(0.0, (static_cast<double>(F) - coverPos_) / speed);
        }
    }
    frac_ = 0.0;
    aRate_ = std::numeric_limits<double>::quiet_NaN(); // the position moved: no anchor
    // A one-shot ends when its last real frame has come out (its fade timed to end there).
    // A one-shot fades out so that the fade ends on its last real frame: the fade starts at the
    // frame of this block where the real output left equals the fade.
    int releaseAt = -1;
    if (!loop_ && sourceDone_ && state_ == State::Running) {
        const double startIn = owed + static_cast<double>(played) - static_cast<double>(fadeLength(ctx));
        if (startIn < static_cast<double>(n)) releaseAt = static_cast<int>(std::clamp(std::ceil(startIn), 0.0, static_cast<double>(n - 1)));
    }
    const bool pair = out_ + 1 < bus.numChannels;
    dsp::StereoGains pg = mono ? dsp::constantPowerPan(pan_.value()) : dsp::balance(pan_.value());
    if (releaseAt < 0 && fadeInLeft_ == 0 && !gain_.ramping() && !pan_.ramping() && !mute_.ramping() && envelopeStatic()) {
        // Steady gains (the common case): one gain per channel for the block.
        const float g = gain_.value() * mute_.value() * envelopeValue();
        const float gl = g * pg.left, gr = g * pg.right;
        float* __restrict L = bus.ch[out_] + from;
        const float* __restrict x0 = out[0];
        const float* __restrict x1 = out[1];
        if (pair) {
            float* __restrict R = bus.ch[out_ + 1] + from;
            if (mono) for (int k = 0; k < n; ++k) { const float v0 = x0[k] * g; L[k] += pg.left * v0; R[k] += pg.right * v0; }
            else for (int k = 0; k < n; ++k) { L[k] += gl * x0[k]; R[k] += gr * x1[k]; }
        } else if (mono) {
            for (int k = 0; k < n; ++k) L[k] += x0[k] * g;
        } else {
            for (int k = 0; k < n; ++k) L[k] += gl * x0[k];
        }
    } else {
        for (int k = 0; k < n; ++k) {
            const int i = from + k;
            if (k == releaseAt) release(ctx, ctx.blockStartSample + i);
            float g = gain_.next() * mute_.next() * nextEnvelope();
            if (fadeInLeft_ > 0 && k < got) {
                g *= 1.0f - static_cast<float>(fadeInLeft_) / static_cast<float>(fadeLength(ctx) + 1);
                --fadeInLeft_;
            }
            if (pan_.ramping()) { const float p = pan_.next(); pg = mono ? dsp::constantPowerPan(p) : dsp::balance(p); }
            if (mono) {
                const float s = out[0][k] * g;
                if (pair) { bus.ch[out_][i] += pg.left * s; bus.ch[out_ + 1][i] += pg.right * s; }
                else bus.ch[out_][i] += s;
            } else {
                bus.ch[out_][i] += g * pg.left * out[0][k];
                if (pair) bus.ch[out_ + 1][i] += g * pg.right * out[1][k];
            }
        }
    }
    if (!loop_ && sourceDone_ && owed <= 0.0 && state_ != State::Ended && state_ != State::Releasing)
        endNow(ctx, ctx.blockStartSample + to);
}

} // namespace loopd
