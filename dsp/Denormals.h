#pragma once
// Flush denormals to zero for the lifetime of the object ([audio]; cheap: two register writes).
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

namespace loopd::dsp {

class ScopedNoDenormals {
public:
    ScopedNoDenormals() noexcept {
#if defined(__SSE__) || defined(__x86_64__)
        saved_ = _mm_getcsr();
        _mm_setcsr(saved_ | 0x8040u); // FTZ | DAZ
#endif
    }
    ~ScopedNoDenormals() {
#if defined(__SSE__) || defined(__x86_64__)
        _mm_setcsr(saved_);
#endif
    }
    ScopedNoDenormals(const ScopedNoDenormals&) = delete;
    ScopedNoDenormals& operator=(const ScopedNoDenormals&) = delete;

private:
    unsigned saved_ = 0;
};

} // namespace loopd::dsp
