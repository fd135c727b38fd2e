#pragma once
// Whole-clip time-stretch for offline work (loopd sections, /cue_section): the engine sees the
// entire clip before it writes a frame, the way Rubber Band's offline mode is meant to be used
// (study, then process), which is what gives its best transients and no start delay.
//
// Threads: any non-real-time thread (it allocates freely); one call per thread at a time, calls
// on different threads are independent.
#include <cstdint>
#include <functional>
#include <vector>

#include "stretch/Stretcher.h"

namespace loopd::stretch {

// `in` holds `channels` planar channels of `frames` frames each. Returns the same number of
// channels, each exactly llround(frames * timeRatio) frames long, pitch unchanged, frame 0 of
// the output lined up with frame 0 of the input. `progress` (may be empty) is called now and
// then with the fraction done (0..1). Throws std::invalid_argument for Method::Rate, a ratio
// outside [1/16, 16] or an empty clip.
std::vector<std::vector<float>> stretchWhole(Method method, const std::vector<const float*>& in, int64_t frames,
                                             double sampleRate, double timeRatio,
                                             const std::function<void(double)>& progress = {});

} // namespace loopd::stretch
