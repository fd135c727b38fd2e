#include "server/drivers/NrtDriver.h"

#include <arpa/inet.h>
#include <sndfile.h>

#include <osc/OscReceivedElements.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "osc/Validate.h"
#include "server/engine/BufferData.h"
#include "server/engine/Engine.h"

namespace loopd {
namespace {

// Timetag (NTP 32.32 seconds from sample 0) → sample, rounded.
int64_t tagToSample(uint64_t tag, double sampleRate) noexcept {
    return static_cast<int64_t>((static_cast<unsigned __int128>(tag) * static_cast<uint64_t>(std::llround(sampleRate)) + (1ull << 31)) >> 32);
}

} // namespace

NrtScore NrtScore::read(const std::string& path) {
    NrtScore s;
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open score " + path);
    for (;;) {
        uint32_t len = 0;
        if (!f.read(reinterpret_cast<char*>(&len), 4)) break;
        len = ntohl(len);
        if (len == 0 || len > (64u << 20)) throw std::runtime_error("score " + path + ": bad record length " + std::to_string(len));
        std::vector<char> p(len);
        if (!f.read(p.data(), len)) throw std::runtime_error("score " + path + ": truncated record");
        s.packets.push_back(std::move(p));
    }
    for (size_t i = 0; i < s.packets.size(); ++i) {
        const auto& p = s.packets[i];
        const std::string record = "score " + path + ": record " + std::to_string(i);
        if (const std::string why = osc::checkPacket(p.data(), p.size()); !why.empty()) throw std::runtime_error(record + " is malformed: " + why);
        try {
            ::osc::ReceivedPacket rp(p.data(), static_cast<::osc::osc_bundle_element_size_t>(p.size()));
            if (!rp.IsBundle()) throw std::runtime_error(record + " is not a bundle");
            const uint64_t tag = ::osc::ReceivedBundle(rp).TimeTag();
            s.order.emplace_back(tag == 1 ? 0 : tag, i);
        } catch (const ::osc::Exception& e) {
            throw std::runtime_error(record + " is malformed: " + e.what());
        }
    }
    std::stable_sort(s.order.begin(), s.order.end(), [](auto& a, auto& b) { return a.first < b.first; });
    s.lastTag = s.order.empty() ? 0 : s.order.back().first;
    return s;
}

int64_t NrtScore::frames(double sampleRate) const noexcept { return tagToSample(lastTag, sampleRate); }

size_t NrtScore::mostBytesInABlock(double sampleRate, int blockSize) const noexcept {
    // `order` is by time: the packets of one block are neighbours.
    size_t most = 0, run = 0;
    int64_t block = -1;
    for (const auto& [tag, index] : order) {
        const int64_t b = std::max<int64_t>(0, tagToSample(tag, sampleRate)) / std::max(1, blockSize);
        if (b != block) { block = b; run = 0; }
        run += packets[index].size();
        most = std::max(most, run);
    }
    return most;
}

NrtDriver::NrtDriver(Engine& engine, const BufferData* input, const std::string& outPath,
                     std::function<void(const char*, size_t)> deliver, std::function<void()> afterBlock)
    : engine_(engine), input_(input), deliver_(std::move(deliver)), afterBlock_(std::move(afterBlock)) {
    const EngineConfig& ec = engine.config();
    SF_INFO info{};
    info.channels = ec.numOutputs;
    info.samplerate = static_cast<int>(std::lround(ec.sampleRate));
    info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
    SNDFILE* out = sf_open(outPath.c_str(), SFM_WRITE, &info);
    if (!out) throw std::runtime_error("cannot write " + outPath + ": " + sf_strerror(nullptr));
    // Deterministic files: no date or software strings that change between runs.
    sf_command(out, SFC_SET_ADD_PEAK_CHUNK, nullptr, SF_FALSE);
    out_ = out;
    const int B = ec.blockSize;
    inBlock_.assign(static_cast<size_t>(std::max(1, ec.numInputs) * B), 0.0f);
    outBlock_.assign(static_cast<size_t>(ec.numOutputs * B), 0.0f);
    for (int c = 0; c < std::max(1, ec.numInputs); ++c) inPtr_.push_back(inBlock_.data() + c * B);
    for (int c = 0; c < ec.numOutputs; ++c) outPtr_.push_back(outBlock_.data() + c * B);
}

NrtDriver::~NrtDriver() {
    if (out_) sf_close(static_cast<SNDFILE*>(out_));
}

int64_t NrtDriver::render(const NrtScore& score) {
    const double rate = engine_.config().sampleRate;
    const int B = engine_.config().blockSize;
    size_t next = 0;
    return renderBlocks(score.frames(rate), [&](int64_t pos) {
        // Hand over every bundle that falls before the end of this block.
        for (; next < score.order.size(); ++next) {
            if (tagToSample(score.order[next].first, rate) >= pos + B) break;
            const auto& p = score.packets[score.order[next].second];
            deliver_(p.data(), p.size());
        }
        return next < score.order.size();
    });
}

int64_t NrtDriver::renderBlocks(int64_t totalFrames, const std::function<bool(int64_t)>& beforeBlock,
                                const std::function<void(int64_t)>& afterBlock) {
    const EngineConfig& ec = engine_.config();
    const int B = ec.blockSize;
    const int C = ec.numOutputs;
    // Output is written in large chunks: one libsndfile call per block would dominate light scores.
    constexpr int64_t kWriteFrames = 16384;
    std::vector<float> inter(static_cast<size_t>(C) * static_cast<size_t>(kWriteFrames + B));
    int64_t pending = 0;
    int64_t pos = 0;
    // File frame k is engine frame k + latency: the limiter's look-ahead is compensated.
    const int64_t latency = engine_.latencySamples();
    int64_t written = 0;
    auto* out = static_cast<SNDFILE*>(out_);
    bool more = true;
    while (written < totalFrames || more) {
        more = beforeBlock(pos);
        for (int c = 0; c < ec.numInputs; ++c) {
            float* dst = inBlock_.data() + c * B;
            // The input file's frames in this block, then silence.
            const int64_t have = input_ && c < input_->numChannels ? std::clamp<int64_t>(input_->numFrames - pos, 0, B) : 0;
            if (have > 0) std::memcpy(dst, input_->channel(c) + pos, static_cast<size_t>(have) * sizeof(float));
            std::fill(dst + have, dst + B, 0.0f);
        }
        engine_.process(inPtr_.data(), outPtr_.data());
        afterBlock_();
        if (afterBlock) afterBlock(pos);
        const int64_t skip = std::clamp<int64_t>(latency - pos, 0, B);
        const int64_t keep = std::min<int64_t>(B - skip, totalFrames - written);
        if (keep > 0) {
            for (int c = 0; c < C; ++c) {
                const float* __restrict x = outBlock_.data() + static_cast<size_t>(c * B + skip);
                float* __restrict y = inter.data() + static_cast<size_t>(pending * C + c);
                for (int64_t i = 0; i < keep; ++i) y[i * C] = x[i];
            }
            pending += keep;
            written += keep;
            if (pending >= kWriteFrames) { sf_writef_float(out, inter.data(), pending); pending = 0; }
        }
        pos += B;
    }
    if (pending > 0) sf_writef_float(out, inter.data(), pending);
    return written;
}

void NrtDriver::flush(const std::function<void()>& after) {
    engine_.process(inPtr_.data(), outPtr_.data());
    after();
}

} // namespace loopd
