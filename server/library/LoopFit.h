#pragma once
// A loop fitted to an exact length offline (the bank's loads, the generator's loops): stretched
// with pitch kept, by Rubber Band R3 unless told otherwise.
//
// Threads: a worker (never the audio thread: the stretcher allocates as it pleases).
#include <cstdint>
#include <memory>

#include "server/engine/BufferData.h"
#include "stretch/Stretcher.h"

namespace loopd::library {

// `loop` (one whole cycle) stretched to exactly `frames`. The loop is fed cyclically (its end
// before its start, a whole cycle after its end) and the output is cut where the loop's start
// lands, so its seams are stretched as its middle is and it still loops without a click.
// Method::Rate resamples (pitch follows). Throws std::runtime_error on a stretcher failure, and
// when a pitch-keeping fit would stretch by less than kMinFitRatio or more than kMaxFitRatio (the
// range the stretchers are made for).
inline constexpr double kMinFitRatio = 0.25;
inline constexpr double kMaxFitRatio = 4.0;
std::unique_ptr<BufferData> fitLoop(const BufferData& loop, int64_t frames, stretch::Method method = stretch::Method::Rb3);

} // namespace loopd::library
