#pragma once
// Reading and writing sound files on non-real-time threads (libsndfile, any format it knows),
// with conversion to the server's sample rate by libsamplerate.
#include <cstdint>
#include <memory>
#include <string>

#include "server/engine/BufferData.h"

namespace loopd {

struct LoadOptions {
    int64_t startFrame = 0;
    int64_t numFrames = -1;            // -1: to the end
    double targetRate = 48000.0;
    int64_t maxSamples = int64_t(1) << 31; // frames * channels after conversion (8 GiB of floats)
    MemoryBudget* budget = nullptr;    // counts the data and the transient copies of the load
    std::string what = "a buffer";     // for the budget's /fail reason
};

// [worker] Throws std::runtime_error with a sentence for /fail.
std::unique_ptr<BufferData> loadAudioFile(const std::string& path, const LoadOptions& options);

// [worker] Converts interleaved `frames` at `fromRate` into planar data at `toRate` (counted
// against `budget` when one is given).
std::unique_ptr<BufferData> resampleToPlanar(const float* interleaved, int64_t frames, int channels,
                                             double fromRate, double toRate, MemoryBudget* budget = nullptr,
                                             const std::string& what = "a buffer");

// [worker] Writes frames [start, start+count) of `data` to a file; format from the extension
// or `headerFormat` ("wav", "aiff", "flac", "caf", "ogg"), sample format "float", "int16", "int24", "int32".
void writeAudioFile(const std::string& path, const BufferData& data, int64_t start, int64_t count,
                    const std::string& headerFormat, const std::string& sampleFormat);

// [any] What a sound file holds, without reading its samples; sampleFormat is one of
// writeAudioFile's names ("float", "int16", "int24", "int32"; "" for other encodings).
struct AudioFileInfo {
    int64_t frames = 0;
    int channels = 0;
    double sampleRate = 0.0;
    std::string sampleFormat;
};
// [worker] Throws std::runtime_error with a sentence when the file is not a readable sound file.
AudioFileInfo probeAudioFile(const std::string& path);

// [any] libsndfile format code for a header/sample format pair; throws on unknown names.
int soundFileFormat(const std::string& path, const std::string& headerFormat, const std::string& sampleFormat);

} // namespace loopd
