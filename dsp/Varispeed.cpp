// The varispeed reader's inner loop (Varispeed.h): scalar, SSE2 (every x86-64) and AVX2 (when
// the CPU has it) versions of the same operations. Compiled with -ffp-contract=off so that no
// version fuses a multiply and an add the others do not.
//
// Each run is cut into chunks of kChunk frames. Phase 1 finds every frame's tap offset and its
// four Hermite weights (independent lanes: SIMD). Phase 2 reads each frame's four taps with one
// unaligned 4-float load, transposes groups of 4 (SSE2) or 8 (AVX2) frames so that each register
// holds one tap of every frame, and weights and mixes them.
#include "dsp/Varispeed.h"

#include <algorithm>
#include <atomic>

#include "dsp/Interpolate.h"

#if defined(__x86_64__) && defined(__SSE2__)
#define LOOPD_VARISPEED_X86 1
#include <immintrin.h>
#endif

namespace loopd::dsp {

namespace {

constexpr int kChunk = 64;

struct Lanes {
    alignas(32) int32_t off[kChunk]; // tap 0 of frame k at index + off[k]
    alignas(32) float frac[kChunk];
    alignas(32) float w[4][kChunk];  // weights of the taps at -1, 0, 1, 2
};

// The weights exactly as Hermite4Weights computes them.
inline void weightsScalar(Lanes& l, int from, int m) noexcept {
    for (int k = from; k < m; ++k) {
        const Hermite4Weights w(l.frac[k]);
        l.w[0][k] = w.wm1;
        l.w[1][k] = w.w0;
        l.w[2][k] = w.w1;
        l.w[3][k] = w.w2;
    }
}

inline float dotScalar(const Lanes& l, int k, const float* x) noexcept {
    return l.w[0][k] * x[-1] + l.w[1][k] * x[0] + l.w[2][k] * x[1] + l.w[3][k] * x[2];
}

// Mixes frames [from, m) of a chunk one at a time (the scalar kernel, and the SIMD ones' tails).
inline void mixScalar(const VarispeedRun& r, const Lanes& l, int base, int from, int m) noexcept {
    const float* a = r.src[0] + r.index;
    if (r.sources == 1) {
        for (int k = from; k < m; ++k) {
            const float s = dotScalar(l, k, a + l.off[k]);
            r.dst[0][base + k] += r.gain[0] * s;
            if (r.dst[1]) r.dst[1][base + k] += r.gain[1] * s;
        }
    } else {
        const float* b = r.src[1] + r.index;
        for (int k = from; k < m; ++k) {
            r.dst[0][base + k] += r.gain[0] * dotScalar(l, k, a + l.off[k]);
            r.dst[1][base + k] += r.gain[1] * dotScalar(l, k, b + l.off[k]);
        }
    }
}

// Phase 1, scalar: frames [from, m) of the chunk whose frame 0 is step `s0` (k0 frames into the run).
inline void positionsScalar(const VarispeedRun& r, Lanes& l, int64_t s0, int64_t k0, int64_t fl0, int from, int m) noexcept {
    for (int k = from; k < m; ++k) {
        const double t = varispeedT(r.anchorFrac, s0 + k, r.rateFrac);
        const int64_t fl = varispeedWhole(t);
        l.off[k] = static_cast<int32_t>((k0 + k) * r.rateWhole + (fl - fl0));
        l.frac[k] = static_cast<float>(t - static_cast<double>(fl));
    }
}

template <class Positions, class Weights, class Mix>
void chunked(const VarispeedRun& r, Positions positions, Weights weights, Mix mix) noexcept {
    Lanes l;
    const int64_t fl0 = varispeedWhole(varispeedT(r.anchorFrac, r.steps, r.rateFrac));
    for (int base = 0; base < r.frames; base += kChunk) {
        const int m = std::min(kChunk, r.frames - base);
        positions(l, r.steps + base, base, fl0, m);
        weights(l, m);
        mix(l, base, m);
    }
}

void runScalar(const VarispeedRun& r) noexcept {
    chunked(
        r, [&](Lanes& l, int64_t s0, int64_t k0, int64_t fl0, int m) { positionsScalar(r, l, s0, k0, fl0, 0, m); },
        [](Lanes& l, int m) { weightsScalar(l, 0, m); }, [&](const Lanes& l, int base, int m) { mixScalar(r, l, base, 0, m); });
}

#ifdef LOOPD_VARISPEED_X86

// ---- SSE2 ----

void positionsSse2(const VarispeedRun& r, Lanes& l, int64_t s0, int64_t k0, int64_t fl0, int m) noexcept {
    const __m128d anchor = _mm_set1_pd(r.anchorFrac), rf = _mm_set1_pd(r.rateFrac);
    const __m128i bias = _mm_set1_epi32(static_cast<int32_t>(-fl0));
    int k = 0;
    for (; k + 4 <= m; k += 4) {
        const double sk = static_cast<double>(s0 + k);
        const __m128d ka = _mm_add_pd(_mm_set1_pd(sk), _mm_set_pd(1.0, 0.0)); // exact: integers
        const __m128d kb = _mm_add_pd(_mm_set1_pd(sk), _mm_set_pd(3.0, 2.0));
        const __m128d ta = _mm_add_pd(anchor, _mm_mul_pd(ka, rf));
        const __m128d tb = _mm_add_pd(anchor, _mm_mul_pd(kb, rf));
        const __m128i ia = _mm_cvttpd_epi32(ta), ib = _mm_cvttpd_epi32(tb);
        const __m128 fa = _mm_cvtpd_ps(_mm_sub_pd(ta, _mm_cvtepi32_pd(ia)));
        const __m128 fb = _mm_cvtpd_ps(_mm_sub_pd(tb, _mm_cvtepi32_pd(ib)));
        _mm_store_ps(l.frac + k, _mm_movelh_ps(fa, fb));
        // off = (k0 + k + j) * rateWhole + (fl - fl0); the products are small (a chunk's worth).
        const __m128i whole = _mm_unpacklo_epi64(ia, ib);
        const auto w0 = static_cast<int32_t>((k0 + k) * r.rateWhole), rw = static_cast<int32_t>(r.rateWhole);
        const __m128i steps = _mm_set_epi32(w0 + 3 * rw, w0 + 2 * rw, w0 + rw, w0);
        _mm_store_si128(reinterpret_cast<__m128i*>(l.off + k), _mm_add_epi32(_mm_add_epi32(whole, bias), steps));
    }
    positionsScalar(r, l, s0, k0, fl0, k, m);
}

inline void weights4(const __m128 t, __m128& wm1, __m128& w0, __m128& w1, __m128& w2) noexcept {
    const __m128 t2 = _mm_mul_ps(t, t), t3 = _mm_mul_ps(t2, t);
    const __m128 h = _mm_set1_ps(0.5f);
    wm1 = _mm_sub_ps(_mm_add_ps(_mm_mul_ps(_mm_set1_ps(-0.5f), t3), t2), _mm_mul_ps(h, t));
    w0 = _mm_add_ps(_mm_sub_ps(_mm_mul_ps(_mm_set1_ps(1.5f), t3), _mm_mul_ps(_mm_set1_ps(2.5f), t2)), _mm_set1_ps(1.0f));
    w1 = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_set1_ps(-1.5f), t3), _mm_mul_ps(_mm_set1_ps(2.0f), t2)), _mm_mul_ps(h, t));
    w2 = _mm_sub_ps(_mm_mul_ps(h, t3), _mm_mul_ps(h, t2));
}

void weightsSse2(Lanes& l, int m) noexcept {
    int k = 0;
    for (; k + 4 <= m; k += 4) {
        __m128 a, b, c, d;
        weights4(_mm_load_ps(l.frac + k), a, b, c, d);
        _mm_store_ps(l.w[0] + k, a);
        _mm_store_ps(l.w[1] + k, b);
        _mm_store_ps(l.w[2] + k, c);
        _mm_store_ps(l.w[3] + k, d);
    }
    weightsScalar(l, k, m);
}

// Four frames' interpolated samples of one source: one load per frame, a 4x4 transpose.
inline __m128 interp4(const Lanes& l, int k, const float* x) noexcept {
    __m128 r0 = _mm_loadu_ps(x + l.off[k] - 1), r1 = _mm_loadu_ps(x + l.off[k + 1] - 1);
    __m128 r2 = _mm_loadu_ps(x + l.off[k + 2] - 1), r3 = _mm_loadu_ps(x + l.off[k + 3] - 1);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    __m128 s = _mm_add_ps(_mm_mul_ps(_mm_load_ps(l.w[0] + k), r0), _mm_mul_ps(_mm_load_ps(l.w[1] + k), r1));
    s = _mm_add_ps(s, _mm_mul_ps(_mm_load_ps(l.w[2] + k), r2));
    return _mm_add_ps(s, _mm_mul_ps(_mm_load_ps(l.w[3] + k), r3));
}

inline void accumulate(float* y, __m128 g, __m128 s) noexcept { _mm_storeu_ps(y, _mm_add_ps(_mm_loadu_ps(y), _mm_mul_ps(g, s))); }

void mixSse2(const VarispeedRun& r, const Lanes& l, int base, int m) noexcept {
    const float* a = r.src[0] + r.index;
    const __m128 g0 = _mm_set1_ps(r.gain[0]), g1 = _mm_set1_ps(r.gain[1]);
    int k = 0;
    if (r.sources == 1) {
        for (; k + 4 <= m; k += 4) {
            const __m128 s = interp4(l, k, a);
            accumulate(r.dst[0] + base + k, g0, s);
            if (r.dst[1]) accumulate(r.dst[1] + base + k, g1, s);
        }
    } else {
        const float* b = r.src[1] + r.index;
        for (; k + 4 <= m; k += 4) {
            accumulate(r.dst[0] + base + k, g0, interp4(l, k, a));
            accumulate(r.dst[1] + base + k, g1, interp4(l, k, b));
        }
    }
    mixScalar(r, l, base, k, m);
}

void runSse2(const VarispeedRun& r) noexcept {
    chunked(
        r, [&](Lanes& l, int64_t s0, int64_t k0, int64_t fl0, int m) { positionsSse2(r, l, s0, k0, fl0, m); },
        [](Lanes& l, int m) { weightsSse2(l, m); }, [&](const Lanes& l, int base, int m) { mixSse2(r, l, base, m); });
}

// ---- AVX2 ----

#define LOOPD_AVX2 __attribute__((target("avx2")))

LOOPD_AVX2 void positionsAvx2(const VarispeedRun& r, Lanes& l, int64_t s0, int64_t k0, int64_t fl0, int m) noexcept {
    const __m256d anchor = _mm256_set1_pd(r.anchorFrac), rf = _mm256_set1_pd(r.rateFrac);
    const __m256d lane = _mm256_set_pd(3.0, 2.0, 1.0, 0.0);
    const __m256i bias = _mm256_set1_epi32(static_cast<int32_t>(-fl0));
    const __m256i laneSteps = _mm256_mullo_epi32(_mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0), _mm256_set1_epi32(static_cast<int32_t>(r.rateWhole)));
    int k = 0;
    for (; k + 8 <= m; k += 8) {
        const double sk = static_cast<double>(s0 + k);
        const __m256d ta = _mm256_add_pd(anchor, _mm256_mul_pd(_mm256_add_pd(_mm256_set1_pd(sk), lane), rf));
        const __m256d tb = _mm256_add_pd(anchor, _mm256_mul_pd(_mm256_add_pd(_mm256_set1_pd(sk + 4.0), lane), rf));
        const __m128i ia = _mm256_cvttpd_epi32(ta), ib = _mm256_cvttpd_epi32(tb);
        const __m128 fa = _mm256_cvtpd_ps(_mm256_sub_pd(ta, _mm256_cvtepi32_pd(ia)));
        const __m128 fb = _mm256_cvtpd_ps(_mm256_sub_pd(tb, _mm256_cvtepi32_pd(ib)));
        _mm256_store_ps(l.frac + k, _mm256_insertf128_ps(_mm256_castps128_ps256(fa), fb, 1));
        const __m256i whole = _mm256_inserti128_si256(_mm256_castsi128_si256(ia), ib, 1);
        const __m256i first = _mm256_set1_epi32(static_cast<int32_t>((k0 + k) * r.rateWhole));
        _mm256_store_si256(reinterpret_cast<__m256i*>(l.off + k),
                           _mm256_add_epi32(_mm256_add_epi32(whole, bias), _mm256_add_epi32(first, laneSteps)));
    }
    positionsScalar(r, l, s0, k0, fl0, k, m);
}

LOOPD_AVX2 void weightsAvx2(Lanes& l, int m) noexcept {
    int k = 0;
    const __m256 h = _mm256_set1_ps(0.5f);
    for (; k + 8 <= m; k += 8) {
        const __m256 t = _mm256_load_ps(l.frac + k);
        const __m256 t2 = _mm256_mul_ps(t, t), t3 = _mm256_mul_ps(t2, t);
        _mm256_store_ps(l.w[0] + k, _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(-0.5f), t3), t2), _mm256_mul_ps(h, t)));
        _mm256_store_ps(l.w[1] + k, _mm256_add_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(1.5f), t3), _mm256_mul_ps(_mm256_set1_ps(2.5f), t2)),
                                                  _mm256_set1_ps(1.0f)));
        _mm256_store_ps(l.w[2] + k, _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(-1.5f), t3), _mm256_mul_ps(_mm256_set1_ps(2.0f), t2)),
                                                  _mm256_mul_ps(h, t)));
        _mm256_store_ps(l.w[3] + k, _mm256_sub_ps(_mm256_mul_ps(h, t3), _mm256_mul_ps(h, t2)));
    }
    weightsScalar(l, k, m);
}

// Eight frames: frame j's four taps in the low half of row j, frame j+4's in the high half, then
// a 4x4 transpose within each half.
LOOPD_AVX2 inline __m256 row8(const Lanes& l, int k, const float* x) noexcept {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(x + l.off[k] - 1)), _mm_loadu_ps(x + l.off[k + 4] - 1), 1);
}

LOOPD_AVX2 inline __m256 interp8(const Lanes& l, int k, const float* x) noexcept {
    const __m256 r0 = row8(l, k, x), r1 = row8(l, k + 1, x), r2 = row8(l, k + 2, x), r3 = row8(l, k + 3, x);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpacklo_ps(r2, r3);
    const __m256 t2 = _mm256_unpackhi_ps(r0, r1), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 xm1 = _mm256_shuffle_ps(t0, t1, 0x44), x0 = _mm256_shuffle_ps(t0, t1, 0xEE);
    const __m256 x1 = _mm256_shuffle_ps(t2, t3, 0x44), x2 = _mm256_shuffle_ps(t2, t3, 0xEE);
    __m256 s = _mm256_add_ps(_mm256_mul_ps(_mm256_load_ps(l.w[0] + k), xm1), _mm256_mul_ps(_mm256_load_ps(l.w[1] + k), x0));
    s = _mm256_add_ps(s, _mm256_mul_ps(_mm256_load_ps(l.w[2] + k), x1));
    return _mm256_add_ps(s, _mm256_mul_ps(_mm256_load_ps(l.w[3] + k), x2));
}

LOOPD_AVX2 inline void accumulate8(float* y, __m256 g, __m256 s) noexcept {
    _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), _mm256_mul_ps(g, s)));
}

LOOPD_AVX2 void mixAvx2(const VarispeedRun& r, const Lanes& l, int base, int m) noexcept {
    const float* a = r.src[0] + r.index;
    const __m256 g0 = _mm256_set1_ps(r.gain[0]), g1 = _mm256_set1_ps(r.gain[1]);
    int k = 0;
    if (r.sources == 1) {
        for (; k + 8 <= m; k += 8) {
            const __m256 s = interp8(l, k, a);
            accumulate8(r.dst[0] + base + k, g0, s);
            if (r.dst[1]) accumulate8(r.dst[1] + base + k, g1, s);
        }
    } else {
        const float* b = r.src[1] + r.index;
        for (; k + 8 <= m; k += 8) {
            accumulate8(r.dst[0] + base + k, g0, interp8(l, k, a));
            accumulate8(r.dst[1] + base + k, g1, interp8(l, k, b));
        }
    }
    mixScalar(r, l, base, k, m);
}

LOOPD_AVX2 void runAvx2(const VarispeedRun& r) noexcept {
    chunked(
        r, [&](Lanes& l, int64_t s0, int64_t k0, int64_t fl0, int m) { positionsAvx2(r, l, s0, k0, fl0, m); },
        [](Lanes& l, int m) { weightsAvx2(l, m); }, [&](const Lanes& l, int base, int m) { mixAvx2(r, l, base, m); });
}

bool hasAvx2() noexcept {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

#endif // LOOPD_VARISPEED_X86

using Kernel = void (*)(const VarispeedRun&) noexcept;

Kernel kernelOf(VarispeedIsa isa) noexcept {
    switch (isa) {
#ifdef LOOPD_VARISPEED_X86
    case VarispeedIsa::Avx2: return hasAvx2() ? &runAvx2 : nullptr;
    case VarispeedIsa::Sse2: return &runSse2;
#else
    case VarispeedIsa::Avx2:
    case VarispeedIsa::Sse2: return nullptr;
#endif
    case VarispeedIsa::Scalar: return &runScalar;
    }
    return nullptr;
}

VarispeedIsa bestIsa() noexcept {
    for (auto isa : {VarispeedIsa::Avx2, VarispeedIsa::Sse2})
        if (kernelOf(isa)) return isa;
    return VarispeedIsa::Scalar;
}

struct Current {
    std::atomic<Kernel> kernel;
    std::atomic<VarispeedIsa> isa;
    Current() : kernel(kernelOf(bestIsa())), isa(bestIsa()) {}
};

Current& current() noexcept {
    static Current c; // initialised before main (first use below), never on the audio thread
    return c;
}
[[maybe_unused]] const bool kPicked = (current(), true);

} // namespace

void varispeedRun(const VarispeedRun& run) noexcept {
    if (run.frames > 0) current().kernel.load(std::memory_order_relaxed)(run);
}

VarispeedIsa varispeedIsa() noexcept { return current().isa.load(std::memory_order_relaxed); }

bool setVarispeedIsa(VarispeedIsa isa) noexcept {
    const Kernel k = kernelOf(isa);
    if (!k) return false;
    current().kernel.store(k, std::memory_order_relaxed);
    current().isa.store(isa, std::memory_order_relaxed);
    return true;
}

const char* varispeedIsaName(VarispeedIsa isa) noexcept {
    switch (isa) {
    case VarispeedIsa::Scalar: return "scalar";
    case VarispeedIsa::Sse2: return "sse2";
    case VarispeedIsa::Avx2: return "avx2";
    }
    return "?";
}

} // namespace loopd::dsp
