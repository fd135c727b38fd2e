#pragma once
// Loop audio on the jam's wire: FLAC (24-bit) in memory through libsndfile's virtual I/O.
//
// Threads: any non-real-time thread (HTTP handlers, the jam client's thread).
#include <memory>
#include <string>

#include "server/engine/BufferData.h"

namespace loopd::net {

// `data` as FLAC bytes (its own rate and channels; samples clipped to [-1, 1] by the format).
std::string encodeFlac(const BufferData& data);

// Any format libsndfile reads (FLAC, WAV, ...) from memory, at the file's own rate; null with
// `error` set when it is not audio.
std::unique_ptr<BufferData> decodeAudio(const std::string& bytes, std::string& error);

} // namespace loopd::net
