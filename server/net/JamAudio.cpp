// FLAC in memory (JamAudio.h).
#include "server/net/JamAudio.h"

#include <sndfile.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace loopd::net {
namespace {

// A growable byte string as a libsndfile file.
struct MemoryFile {
    std::string* bytes;
    const std::string* readOnly;
    sf_count_t pos = 0;
    sf_count_t size() const { return static_cast<sf_count_t>(readOnly ? readOnly->size() : bytes->size()); }
};

sf_count_t mfLength(void* u) { return static_cast<MemoryFile*>(u)->size(); }
sf_count_t mfSeek(sf_count_t offset, int whence, void* u) {
    auto* f = static_cast<MemoryFile*>(u);
    sf_count_t to = whence == SEEK_SET ? offset : whence == SEEK_CUR ? f->pos + offset : f->size() + offset;
    if (to < 0) return -1;
    f->pos = to;
    return to;
}
sf_count_t mfRead(void* dst, sf_count_t count, void* u) {
    auto* f = static_cast<MemoryFile*>(u);
    const std::string& b = f->readOnly ? *f->readOnly : *f->bytes;
    const sf_count_t n = std::max<sf_count_t>(0, std::min(count, f->size() - f->pos));
    if (n > 0) std::memcpy(dst, b.data() + f->pos, static_cast<size_t>(n));
    f->pos += n;
    return n;
}
sf_count_t mfWrite(const void* src, sf_count_t count, void* u) {
    auto* f = static_cast<MemoryFile*>(u);
    if (!f->bytes) return 0;
    const auto end = static_cast<size_t>(f->pos + count);
    if (f->bytes->size() < end) f->bytes->resize(end);
    std::memcpy(f->bytes->data() + f->pos, src, static_cast<size_t>(count));
    f->pos += count;
    return count;
}
sf_count_t mfTell(void* u) { return static_cast<MemoryFile*>(u)->pos; }

SF_VIRTUAL_IO memoryIo() { return SF_VIRTUAL_IO{mfLength, mfSeek, mfRead, mfWrite, mfTell}; }

} // namespace

std::string encodeFlac(const BufferData& data) {
    std::string out;
    MemoryFile mf{&out, nullptr};
    SF_VIRTUAL_IO io = memoryIo();
    SF_INFO info{};
    info.samplerate = static_cast<int>(data.sampleRate);
    info.channels = std::max(1, data.numChannels);
    info.format = SF_FORMAT_FLAC | SF_FORMAT_PCM_24;
    SNDFILE* f = sf_open_virtual(&io, SFM_WRITE, &info, &mf);
    if (!f) throw std::runtime_error(std::string("FLAC encoder: ") + sf_strerror(nullptr));
    constexpr int64_t kChunk = 8192;
    std::vector<float> chunk(static_cast<size_t>(kChunk * info.channels));
    for (int64_t at = 0; at < data.numFrames; at += kChunk) {
        const int64_t n = std::min(kChunk, data.numFrames - at);
        for (int64_t i = 0; i < n; ++i)
            for (int c = 0; c < info.channels; ++c)
                chunk[static_cast<size_t>(i * info.channels + c)] = std::clamp(data.channel(c)[at + i], -1.0f, 1.0f);
        sf_writef_float(f, chunk.data(), n);
    }
    sf_close(f);
    return out;
}

std::unique_ptr<BufferData> decodeAudio(const std::string& bytes, std::string& error) {
    MemoryFile mf{nullptr, &bytes};
    SF_VIRTUAL_IO io = memoryIo();
    SF_INFO info{};
    SNDFILE* f = sf_open_virtual(&io, SFM_READ, &info, &mf);
    if (!f) {
        error = std::string("not audio libsndfile reads (") + sf_strerror(nullptr) + ")";
        return nullptr;
    }
    if (info.channels < 1 || info.channels > 2 || info.frames < 0 || info.frames > (int64_t(1) << 28)) {
        error = std::to_string(info.channels) + " channels, " + std::to_string(info.frames) + " frames: a take is 1 or 2 channels";
        sf_close(f);
        return nullptr;
    }
    auto d = BufferData::zeros(info.frames, info.channels, info.samplerate);
    d->sourceRate = info.samplerate;
    std::vector<float> chunk(static_cast<size_t>(8192 * info.channels));
    int64_t at = 0;
    while (at < info.frames) {
        const sf_count_t got = sf_readf_float(f, chunk.data(), std::min<sf_count_t>(8192, info.frames - at));
        if (got <= 0) break;
        for (sf_count_t i = 0; i < got; ++i)
            for (int c = 0; c < info.channels; ++c) d->channel(c)[at + i] = chunk[static_cast<size_t>(i * info.channels + c)];
        at += got;
    }
    sf_close(f);
    if (at < info.frames) {
        error = "the audio ends after " + std::to_string(at) + " of its " + std::to_string(info.frames) + " frames";
        return nullptr;
    }
    return d;
}

} // namespace loopd::net
