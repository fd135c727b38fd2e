// Onsets of a mono stream (OnsetDetector.h).
#include "server/analysis/OnsetDetector.h"

#include <aubio/aubio.h>

namespace loopd {

struct OnsetDetector::Aubio {
    aubio_onset_t* detector;
    fvec_t* in = new_fvec(kHop);
    fvec_t* out = new_fvec(1);
    explicit Aubio(double sampleRate) : detector(new_aubio_onset("default", 4 * kHop, kHop, static_cast<uint_t>(sampleRate))) {
        aubio_onset_set_minioi_ms(detector, 50.0f);
    }
    ~Aubio() {
        del_aubio_onset(detector);
        del_fvec(in);
        del_fvec(out);
    }
    Aubio(const Aubio&) = delete;
    Aubio& operator=(const Aubio&) = delete;
};

OnsetDetector::OnsetDetector(double sampleRate) : aubio_(std::make_unique<Aubio>(sampleRate)) {}
OnsetDetector::~OnsetDetector() = default;

void OnsetDetector::push(const float* x, int n, std::vector<Onset>& out) {
    Aubio& a = *aubio_;
    for (int i = 0; i < n; ++i) {
        a.in->data[filled_++] = x[i];
        if (filled_ < kHop) continue;
        filled_ = 0;
        aubio_onset_do(a.detector, a.in, a.out);
        if (a.out->data[0] != 0.0f)
            out.push_back(Onset{static_cast<int64_t>(aubio_onset_get_last(a.detector)), static_cast<double>(aubio_onset_get_descriptor(a.detector))});
    }
}

} // namespace loopd
