#include "server/io/AudioFile.h"

#include <samplerate.h>
#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace loopd {

std::unique_ptr<BufferData> resampleToPlanar(const float* interleaved, int64_t frames, int channels,
                                             double fromRate, double toRate, MemoryBudget* budget,
                                             const std::string& what) {
    std::vector<float> converted;
    MemoryLease convertedLease;
    const float* src = interleaved;
    int64_t outFrames = frames;
    if (fromRate != toRate && frames > 0) {
        const double ratio = toRate / fromRate;
        outFrames = static_cast<int64_t>(std::ceil(static_cast<double>(frames) * ratio));
        if (budget) convertedLease = budget->reserve((outFrames + 64) * channels * static_cast<int64_t>(sizeof(float)), what + " (resampling)");
        converted.resize(static_cast<size_t>((outFrames + 64) * channels));
        SRC_DATA d{};
        d.data_in = interleaved;
        d.input_frames = static_cast<long>(frames);
        d.data_out = converted.data();
        d.output_frames = static_cast<long>(outFrames + 64);
        d.src_ratio = ratio;
        d.end_of_input = 1;
        const int err = src_simple(&d, SRC_SINC_MEDIUM_QUALITY, channels);
        if (err) throw std::runtime_error(std::string("resampling failed: ") + src_strerror(err));
        outFrames = d.output_frames_gen;
        src = converted.data();
    }
    auto b = BufferData::zeros(outFrames, channels, toRate, budget, what);
    b->sourceRate = fromRate;
    for (int64_t i = 0; i < outFrames; ++i)
        for (int c = 0; c < channels; ++c) b->channel(c)[i] = src[i * channels + c];
    return b;
}

std::unique_ptr<BufferData> loadAudioFile(const std::string& path, const LoadOptions& o) {
    SF_INFO info{};
    SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
    if (!f) throw std::runtime_error("not a readable sound file: " + path + " (" + sf_strerror(nullptr) + ")");
    struct Closer { SNDFILE* f; ~Closer() { sf_close(f); } } closer{f};
    if (info.channels <= 0 || info.channels > 32) throw std::runtime_error("unsupported channel count " + std::to_string(info.channels) + " in " + path);
    if (info.samplerate <= 0) throw std::runtime_error("bad sample rate in " + path);
    if (info.frames <= 0) throw std::runtime_error("sound file has no frames: " + path);
    const int64_t start = std::clamp<int64_t>(o.startFrame, 0, info.frames);
    int64_t count = o.numFrames < 0 ? info.frames - start : std::min<int64_t>(o.numFrames, info.frames - start);
    if (count <= 0) throw std::runtime_error("no frames to read from " + path + " at frame " + std::to_string(start));
    const double converted = static_cast<double>(count) * o.targetRate / info.samplerate * info.channels;
    if (converted > static_cast<double>(o.maxSamples))
        throw std::runtime_error("sound file too large: " + path + " (" + std::to_string(count) + " frames x " +
                                 std::to_string(info.channels) + " channels exceeds the buffer limit)");
    if (start > 0 && sf_seek(f, start, SEEK_SET) < 0) throw std::runtime_error("cannot seek in " + path);
    std::vector<float> inter;
    MemoryLease interLease;
    if (o.budget) interLease = o.budget->reserve(count * info.channels * static_cast<int64_t>(sizeof(float)), o.what + " (reading " + path + ")");
    try {
        inter.resize(static_cast<size_t>(count * info.channels));
    } catch (const std::bad_alloc&) {
        throw std::runtime_error("out of memory loading " + path);
    }
    const sf_count_t got = sf_readf_float(f, inter.data(), count);
    if (got <= 0) throw std::runtime_error("could not read audio from " + path + " (" + sf_strerror(f) + ")");
    auto b = resampleToPlanar(inter.data(), got, info.channels, info.samplerate, o.targetRate, o.budget, o.what);
    b->path = path;
    return b;
}

AudioFileInfo probeAudioFile(const std::string& path) {
    SF_INFO info{};
    SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
    if (!f) throw std::runtime_error("not a readable sound file: " + path + " (" + sf_strerror(nullptr) + ")");
    sf_close(f);
    if (info.channels <= 0 || info.channels > 32) throw std::runtime_error("unsupported channel count " + std::to_string(info.channels) + " in " + path);
    if (info.samplerate <= 0) throw std::runtime_error("bad sample rate in " + path);
    AudioFileInfo a;
    a.frames = info.frames;
    a.channels = info.channels;
    a.sampleRate = info.samplerate;
    switch (info.format & SF_FORMAT_SUBMASK) {
    case SF_FORMAT_PCM_16: a.sampleFormat = "int16"; break;
    case SF_FORMAT_PCM_24: a.sampleFormat = "int24"; break;
    case SF_FORMAT_PCM_32: a.sampleFormat = "int32"; break;
    case SF_FORMAT_FLOAT: case SF_FORMAT_DOUBLE: a.sampleFormat = "float"; break;
    default: break;
    }
    return a;
}

int soundFileFormat(const std::string& path, const std::string& headerFormat, const std::string& sampleFormat) {
    std::string h = headerFormat;
    if (h.empty()) {
        const auto dot = path.find_last_of('.');
        h = dot == std::string::npos ? "wav" : path.substr(dot + 1);
    }
    std::transform(h.begin(), h.end(), h.begin(), ::tolower);
    int major;
    if (h == "wav" || h == "wave") major = SF_FORMAT_WAV;
    else if (h == "aiff" || h == "aif") major = SF_FORMAT_AIFF;
    else if (h == "flac") major = SF_FORMAT_FLAC;
    else if (h == "caf") major = SF_FORMAT_CAF;
    else if (h == "ogg") major = SF_FORMAT_OGG;
    else if (h == "w64") major = SF_FORMAT_W64;
    else throw std::runtime_error("unknown header format '" + h + "' (wav, aiff, flac, caf, ogg, w64)");
    std::string s = sampleFormat.empty() ? (major == SF_FORMAT_FLAC ? "int24" : major == SF_FORMAT_OGG ? "vorbis" : "float") : sampleFormat;
    int minor;
    if (s == "float") minor = SF_FORMAT_FLOAT;
    else if (s == "int16") minor = SF_FORMAT_PCM_16;
    else if (s == "int24") minor = SF_FORMAT_PCM_24;
    else if (s == "int32") minor = SF_FORMAT_PCM_32;
    else if (s == "int8") minor = SF_FORMAT_PCM_S8;
    else if (s == "vorbis") minor = SF_FORMAT_VORBIS;
    else throw std::runtime_error("unknown sample format '" + s + "' (float, int16, int24, int32)");
    return major | minor;
}

void writeAudioFile(const std::string& path, const BufferData& data, int64_t start, int64_t count,
                    const std::string& headerFormat, const std::string& sampleFormat) {
    SF_INFO info{};
    info.channels = data.numChannels;
    info.samplerate = static_cast<int>(std::lround(data.sampleRate));
    info.format = soundFileFormat(path, headerFormat, sampleFormat);
    if (!sf_format_check(&info)) throw std::runtime_error("format not supported for " + path);
    SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
    if (!f) throw std::runtime_error("cannot write " + path + " (" + sf_strerror(nullptr) + ")");
    sf_command(f, SFC_SET_CLIPPING, nullptr, SF_TRUE); // integer formats: clip, never wrap around
    start = std::clamp<int64_t>(start, 0, data.numFrames);
    count = count < 0 ? data.numFrames - start : std::min(count, data.numFrames - start);
    std::vector<float> inter(static_cast<size_t>(std::max<int64_t>(count, 0) * data.numChannels));
    for (int64_t i = 0; i < count; ++i)
        for (int c = 0; c < data.numChannels; ++c) inter[static_cast<size_t>(i * data.numChannels + c)] = data.channel(c)[start + i];
    const sf_count_t wrote = sf_writef_float(f, inter.data(), count);
    const int err = sf_close(f);
    if (wrote != count || err) throw std::runtime_error("write failed for " + path);
}

} // namespace loopd
