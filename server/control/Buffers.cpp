// The buffer module (Buffers.h).
#include "server/control/Buffers.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "server/engine/BufferData.h"
#include "server/io/AudioFile.h"

namespace loopd {

Buffers::Buffers(Controller& c) : Module(c) {
    workerBuffers_.assign(static_cast<size_t>(engine_.config().maxBuffers), nullptr);
    on("/b_alloc", &Buffers::hBAlloc);
    on("/b_allocRead", &Buffers::hBAllocRead);
    on("/b_read", &Buffers::hBRead);
    on("/b_write", &Buffers::hBWrite);
    on("/b_free", &Buffers::hBFree);
    on("/b_zero", &Buffers::hBZero);
    on("/b_query", &Buffers::hBQuery);
    on("/b_get", &Buffers::hBGet);
    on("/b_getn", &Buffers::hBGetn);
    on("/b_set", &Buffers::hBSet);
    on("/b_setn", &Buffers::hBSetn);
    on("/b_gen", &Buffers::hBGen);
    on("/b_close", &Buffers::hBClose);
}

int32_t Buffers::bufnum(Msg& m) {
    const int32_t b = m.args.int32("buffer number");
    if (b < 0 || b >= engine_.config().maxBuffers)
        throw osc::ArgError("buffer number " + std::to_string(b) + " out of range (0.." + std::to_string(engine_.config().maxBuffers - 1) + ")");
    return b;
}

LoadOptions Buffers::loadOptions(const std::string& what) {
    LoadOptions o;
    o.targetRate = engine_.config().sampleRate;
    o.maxSamples = options_.maxBufferSamples;
    o.budget = &budget();
    o.what = what;
    return o;
}

void Buffers::swapBuffer(uint16_t client, const char* address, int32_t b, std::unique_ptr<BufferData> data,
                            uint32_t completion, bool announce, uint8_t at) {
    if (b < 0 || b >= engine_.config().maxBuffers) { failAsync(client, address, "buffer number " + std::to_string(b) + " out of range", completion); return; }
    // The previous data is freed by the control thread once the audio thread has let go of it.
    BufferData* raw = data.get();
    if (!pushFromWorker(client, address, 0, cmd::SwapBuffer{b, raw, address, completion, announce, at})) {
        dropCompletion(completion);
        return; // data freed by unique_ptr
    }
    data.release();
    workerBuffers_[static_cast<size_t>(b)] = raw;
}

std::vector<int32_t> Buffers::knownBuffers() {
    std::lock_guard<std::mutex> lock(knownMutex_);
    std::vector<int32_t> v(knownBuffers_.begin(), knownBuffers_.end());
    std::sort(v.begin(), v.end());
    return v;
}

bool Buffers::bufferKnown(int32_t b) {
    std::lock_guard<std::mutex> lock(knownMutex_);
    return knownBuffers_.count(b) > 0;
}

void Buffers::loadBuffer(Msg& m, int32_t b, const std::string& path, const char* address) {
    LoadOptions o = loadOptions("buffer " + std::to_string(b));
    loadBufferWith(m, b, address, [path, o] { return loadAudioFile(path, o); });
}

void Buffers::loadBufferWith(Msg& m, int32_t b, const char* address, std::function<std::unique_ptr<BufferData>()> make) {
    if (b < 0 || b >= engine_.config().maxBuffers)
        throw osc::ArgError("buffer " + std::to_string(b) + " is beyond the server's buffer table (0.." +
                            std::to_string(engine_.config().maxBuffers - 1) + ")");
    {
        std::lock_guard<std::mutex> lock(knownMutex_);
        knownBuffers_.insert(b);
    }
    const uint16_t client = m.client;
    worker_.post([=, this, make = std::move(make)] {
        try {
            swapBuffer(client, address, b, make());
        } catch (const std::exception& e) {
            if (!workerBuffers_[static_cast<size_t>(b)]) {
                std::lock_guard<std::mutex> lock(knownMutex_);
                knownBuffers_.erase(b);
            }
            fail(client, address, e.what());
        }
    });
}

void Buffers::freeBuffers(uint16_t client, const char* address, std::function<bool(int32_t)> which) {
    std::vector<int32_t> buffers;
    {
        std::lock_guard<std::mutex> lock(knownMutex_);
        for (int32_t b : knownBuffers_)
            if (which(b)) buffers.push_back(b);
        for (int32_t b : buffers) knownBuffers_.erase(b);
    }
    worker_.post([=, this] {
        for (int32_t b : buffers)
            if (workerBuffers_[static_cast<size_t>(b)] && pushFromWorker(kNoClient, address, 0, cmd::SwapBuffer{b, nullptr, address}))
                workerBuffers_[static_cast<size_t>(b)] = nullptr;
        done(client, address);
    });
}

void Buffers::hBAlloc(Msg& m) {
    const int32_t b = bufnum(m);
    const int32_t frames = m.args.int32("frames");
    const int32_t chans = m.args.atEnd() ? 1 : m.args.int32("channels");
    if (frames <= 0) throw osc::ArgError("frames must be positive, got " + std::to_string(frames));
    if (chans < 1 || chans > 32) throw osc::ArgError("channels must be 1..32, got " + std::to_string(chans));
    if (static_cast<int64_t>(frames) * chans > options_.maxBufferSamples) throw osc::ArgError("buffer too large for the buffer limit");
    const uint16_t client = m.client;
    const uint32_t completion = m.completion;
    const double sr = engine_.config().sampleRate;
    {
        std::lock_guard<std::mutex> lock(knownMutex_);
        knownBuffers_.insert(b);
    }
    worker_.post([=, this] {
        try {
            swapBuffer(client, "/b_alloc", b, BufferData::zeros(frames, chans, sr, &budget(), "buffer " + std::to_string(b)), completion);
        } catch (const std::bad_alloc&) {
            failAsync(client, "/b_alloc", "out of memory for buffer " + std::to_string(b), completion);
        } catch (const std::exception& e) {
            failAsync(client, "/b_alloc", e.what(), completion);
        }
    });
}

void Buffers::hBAllocRead(Msg& m) {
    const int32_t b = bufnum(m);
    const std::string path = checkedPath(m, m.args.string("path"), false);
    const int32_t start = m.args.atEnd() ? 0 : m.args.int32("start frame");
    const int32_t frames = m.args.atEnd() ? -1 : m.args.int32("frames");
    if (start < 0) throw osc::ArgError("start frame must not be negative");
    const uint16_t client = m.client;
    LoadOptions o = loadOptions("buffer " + std::to_string(b));
    o.startFrame = start;
    o.numFrames = frames <= 0 ? -1 : frames;
    {
        std::lock_guard<std::mutex> lock(knownMutex_);
        knownBuffers_.insert(b);
    }
    const uint32_t completion = m.completion;
    worker_.post([=, this] {
        try {
            swapBuffer(client, "/b_allocRead", b, loadAudioFile(path, o), completion);
        } catch (const std::exception& e) {
            if (!workerBuffers_[static_cast<size_t>(b)]) {
                std::lock_guard<std::mutex> lock(knownMutex_);
                knownBuffers_.erase(b);
            }
            failAsync(client, "/b_allocRead", e.what(), completion);
        }
    });
}

void Buffers::hBRead(Msg& m) {
    const int32_t b = bufnum(m);
    const std::string path = checkedPath(m, m.args.string("path"), false);
    const int32_t fileStart = m.args.atEnd() ? 0 : m.args.int32("file start frame");
    const int32_t frames = m.args.atEnd() ? -1 : m.args.int32("frames");
    const int32_t bufStart = m.args.atEnd() ? 0 : m.args.int32("buffer start frame");
    if (fileStart < 0 || bufStart < 0) throw osc::ArgError("start frames must not be negative");
    const uint16_t client = m.client;
    LoadOptions o = loadOptions("buffer " + std::to_string(b));
    o.startFrame = fileStart;
    o.numFrames = frames <= 0 ? -1 : frames;
    const uint32_t completion = m.completion;
    worker_.post([=, this] {
        try {
            const BufferData* cur = workerBuffers_[static_cast<size_t>(b)];
            if (!cur) throw std::runtime_error("buffer " + std::to_string(b) + " is not loaded");
            if (bufStart >= cur->numFrames) throw std::runtime_error("buffer start frame " + std::to_string(bufStart) + " is past the end of buffer " + std::to_string(b));
            auto in = loadAudioFile(path, o);
            // Copy on write: the audio thread keeps reading the old data until the swap.
            auto next = BufferData::zeros(cur->numFrames, cur->numChannels, cur->sampleRate, &budget(), "buffer " + std::to_string(b));
            std::copy_n(cur->samples.get(), cur->numFrames * cur->numChannels, next->samples.get());
            next->path = path;
            const int64_t n = std::min<int64_t>(in->numFrames, cur->numFrames - bufStart);
            for (int c = 0; c < cur->numChannels; ++c) {
                const float* src = in->channel(std::min(c, in->numChannels - 1));
                std::copy_n(src, n, next->channel(c) + bufStart);
            }
            swapBuffer(client, "/b_read", b, std::move(next), completion);
        } catch (const std::exception& e) {
            failAsync(client, "/b_read", e.what(), completion);
        }
    });
}

void Buffers::hBWrite(Msg& m) {
    const int32_t b = bufnum(m);
    const std::string path = checkedPath(m, m.args.string("path"), true);
    const std::string header = m.args.atEnd() ? "" : m.args.string("header format");
    const std::string sample = m.args.atEnd() ? "" : m.args.string("sample format");
    const int32_t frames = m.args.atEnd() ? -1 : m.args.int32("frames");
    const int32_t start = m.args.atEnd() ? 0 : m.args.int32("start frame");
    if (!m.args.atEnd()) m.args.int32("leave open"); // scsynth's: loopd writes the file at once
    m.args.expectEnd();
    soundFileFormat(path, header, sample); // throws on unknown names
    const uint16_t client = m.client;
    const uint32_t completion = m.completion;
    worker_.post([=, this] {
        try {
            const BufferData* cur = workerBuffers_[static_cast<size_t>(b)];
            if (!cur) throw std::runtime_error("buffer " + std::to_string(b) + " is not loaded");
            writeAudioFile(path, *cur, start, frames, header, sample);
            finishAsync(client, "/b_write", b, completion);
        } catch (const std::exception& e) {
            failAsync(client, "/b_write", e.what(), completion);
        }
    });
}

void Buffers::hBFree(Msg& m) {
    const int32_t b = bufnum(m);
    const uint16_t client = m.client;
    const uint32_t completion = m.completion;
    worker_.post([=, this] {
        if (!workerBuffers_[static_cast<size_t>(b)]) { failAsync(client, "/b_free", "buffer " + std::to_string(b) + " is not loaded", completion); return; }
        if (pushFromWorker(client, "/b_free", 0, cmd::SwapBuffer{b, nullptr, "/b_free", completion})) {
            workerBuffers_[static_cast<size_t>(b)] = nullptr;
            std::lock_guard<std::mutex> lock(knownMutex_);
            knownBuffers_.erase(b);
        } else {
            dropCompletion(completion);
        }
    });
}

void Buffers::hBZero(Msg& m) {
    const int32_t b = bufnum(m);
    const uint16_t client = m.client;
    const uint32_t completion = m.completion;
    worker_.post([=, this] {
        const BufferData* cur = workerBuffers_[static_cast<size_t>(b)];
        if (!cur) { failAsync(client, "/b_zero", "buffer " + std::to_string(b) + " is not loaded", completion); return; }
        try {
            swapBuffer(client, "/b_zero", b, BufferData::zeros(cur->numFrames, cur->numChannels, cur->sampleRate, &budget(), "buffer " + std::to_string(b)), completion);
        } catch (const std::exception& e) {
            failAsync(client, "/b_zero", e.what(), completion);
        }
    });
}

void Buffers::hBQuery(Msg& m) {
    std::vector<int32_t> ids;
    do ids.push_back(bufnum(m));
    while (!m.args.atEnd());
    const uint16_t client = m.client;
    worker_.post([=, this] {
        for (int32_t b : ids) {
            const BufferData* cur = workerBuffers_[static_cast<size_t>(b)];
            if (!cur) { fail(client, "/b_query", "buffer " + std::to_string(b) + " is not loaded"); continue; }
            send(client, osc::MessageBuilder("/b_info").i(b).i(static_cast<int32_t>(cur->numFrames))
                             .i(cur->numChannels).f(static_cast<float>(cur->sampleRate)));
        }
    });
}

void Buffers::hBGet(Msg& m) {
    const int32_t b = bufnum(m);
    std::vector<int32_t> idx;
    do idx.push_back(m.args.int32("sample index"));
    while (!m.args.atEnd());
    const uint16_t client = m.client;
    worker_.post([=, this] {
        const BufferData* cur = workerBuffers_[static_cast<size_t>(b)];
        if (!cur) { fail(client, "/b_get", "buffer " + std::to_string(b) + " is not loaded"); return; }
        const int64_t total = cur->numFrames * cur->numChannels;
        osc::MessageBuilder r("/b_set");
        r.i(b);
        for (int32_t i : idx) {
            if (i < 0 || i >= total) { fail(client, "/b_get", "sample index " + std::to_string(i) + " out of range (buffer " + std::to_string(b) + " has " + std::to_string(total) + ")"); return; }
            r.i(i).f(cur->channel(static_cast<int>(i % cur->numChannels))[i / cur->numChannels]);
        }
        send(client, r);
    });
}

void Buffers::hBGetn(Msg& m) {
    const int32_t b = bufnum(m);
    std::vector<std::pair<int32_t, int32_t>> ranges;
    do {
        const int32_t first = m.args.int32("first sample index");
        const int32_t count = m.args.int32("number of samples");
        if (count < 0 || count > 65536) throw osc::ArgError("number of samples must be 0..65536");
        ranges.emplace_back(first, count);
    } while (!m.args.atEnd());
    const uint16_t client = m.client;
    worker_.post([=, this] {
        const BufferData* cur = workerBuffers_[static_cast<size_t>(b)];
        if (!cur) { fail(client, "/b_getn", "buffer " + std::to_string(b) + " is not loaded"); return; }
        const int64_t total = cur->numFrames * cur->numChannels;
        osc::MessageBuilder r("/b_setn");
        r.i(b);
        for (const auto& [first, count] : ranges) {
            if (first < 0 || static_cast<int64_t>(first) + count > total) {
                fail(client, "/b_getn", "samples " + std::to_string(first) + " + " + std::to_string(count) + " out of range (buffer " + std::to_string(b) + " has " + std::to_string(total) + ")");
                return;
            }
            r.i(first).i(count);
            for (int32_t i = first; i < first + count; ++i) r.f(cur->channel(static_cast<int>(i % cur->numChannels))[i / cur->numChannels]);
        }
        send(client, r);
    });
}

void Buffers::changeSamples(uint16_t client, const char* address, int32_t b, std::vector<std::pair<int32_t, float>> values) {
    worker_.post([=, this] {
        const BufferData* cur = workerBuffers_[static_cast<size_t>(b)];
        if (!cur) { fail(client, address, "buffer " + std::to_string(b) + " is not loaded"); return; }
        const int64_t total = cur->numFrames * cur->numChannels;
        for (const auto& [i, v] : values)
            if (i < 0 || i >= total) { fail(client, address, "sample index " + std::to_string(i) + " out of range (buffer " + std::to_string(b) + " has " + std::to_string(total) + ")"); return; }
        try {
            auto next = BufferData::zeros(cur->numFrames, cur->numChannels, cur->sampleRate, &budget(), "buffer " + std::to_string(b));
            std::copy_n(cur->samples.get(), total, next->samples.get());
            next->path = cur->path;
            next->sourceRate = cur->sourceRate;
            for (const auto& [i, v] : values) next->channel(static_cast<int>(i % cur->numChannels))[i / cur->numChannels] = v;
            swapBuffer(client, address, b, std::move(next), 0, false); // scsynth answers /b_set with nothing
        } catch (const std::exception& e) {
            fail(client, address, e.what());
        }
    });
}

void Buffers::hBSet(Msg& m) {
    const int32_t b = bufnum(m);
    std::vector<std::pair<int32_t, float>> values;
    do {
        const int32_t i = m.args.int32("sample index");
        values.emplace_back(i, m.args.number("value"));
    } while (!m.args.atEnd());
    changeSamples(m.client, "/b_set", b, std::move(values));
}

void Buffers::hBSetn(Msg& m) {
    const int32_t b = bufnum(m);
    std::vector<std::pair<int32_t, float>> values;
    do {
        const int32_t first = m.args.int32("first sample index");
        const int32_t count = m.args.int32("number of samples");
        if (count < 0 || first < 0) throw osc::ArgError("sample index and count must not be negative");
        for (int32_t k = 0; k < count; ++k) values.emplace_back(first + k, m.args.number("value"));
    } while (!m.args.atEnd());
    changeSamples(m.client, "/b_setn", b, std::move(values));
}

void Buffers::hBClose(Msg& m) {
    // loopd writes a file at once (/b_write): there is never one left open to close.
    const int32_t b = bufnum(m);
    m.args.expectEnd();
    const uint32_t completion = m.completion;
    finishAsync(m.client, "/b_close", b, completion);
}

void Buffers::hBGen(Msg& m) {
    // scsynth's generators: sine1 amps..., sine2 (freq amp)..., sine3 (freq amp phase)...,
    // cheby amps..., with flags 1 normalize, 2 wavetable (not supported), 4 clear; and
    // copy dstFrame srcBuf srcFrame numFrames. Asynchronous: /done /b_gen bufnum.
    const int32_t b = bufnum(m);
    const std::string command = m.args.string("generator");
    const uint32_t completion = m.completion;
    const uint16_t client = m.client;
    if (command == "copy") {
        const int32_t dst = m.args.int32("destination frame");
        const int32_t src = m.args.int32("source buffer");
        const int32_t srcFrame = m.args.atEnd() ? 0 : m.args.int32("source frame");
        const int32_t frames = m.args.atEnd() ? -1 : m.args.int32("number of frames");
        m.args.expectEnd();
        if (src < 0 || src >= engine_.config().maxBuffers) throw osc::ArgError("source buffer " + std::to_string(src) + " out of range");
        if (dst < 0 || srcFrame < 0) throw osc::ArgError("frames must not be negative");
        worker_.post([=, this] {
            const BufferData* to = workerBuffers_[static_cast<size_t>(b)];
            const BufferData* from = workerBuffers_[static_cast<size_t>(src)];
            if (!to || !from) { failAsync(client, "/b_gen", "buffer " + std::to_string(!to ? b : src) + " is not loaded", completion); return; }
            if (to->numChannels != from->numChannels) { failAsync(client, "/b_gen", "copy needs buffers with as many channels (" + std::to_string(to->numChannels) + " and " + std::to_string(from->numChannels) + ")", completion); return; }
            try {
                auto next = BufferData::zeros(to->numFrames, to->numChannels, to->sampleRate, &budget(), "buffer " + std::to_string(b));
                std::copy_n(to->samples.get(), to->numFrames * to->numChannels, next->samples.get());
                next->path = to->path;
                const int64_t n = std::min({frames < 0 ? from->numFrames : static_cast<int64_t>(frames), from->numFrames - srcFrame, to->numFrames - dst});
                for (int c = 0; c < to->numChannels && n > 0; ++c) std::copy_n(from->channel(c) + srcFrame, n, next->channel(c) + dst);
                swapBuffer(client, "/b_gen", b, std::move(next), completion);
            } catch (const std::exception& e) {
                failAsync(client, "/b_gen", e.what(), completion);
            }
        });
        return;
    }
    if (command != "sine1" && command != "sine2" && command != "sine3" && command != "cheby")
        throw osc::ArgError("unknown /b_gen command '" + command + "' (sine1, sine2, sine3, cheby, copy)");
    const int32_t flags = m.args.int32("flags");
    if (flags & 2) throw osc::ArgError("the wavetable format (flag 2) is not supported: loopd has no wavetable oscillators");
    std::vector<float> a;
    while (!m.args.atEnd()) a.push_back(m.args.number("amplitude"));
    const size_t per = command == "sine2" ? 2 : command == "sine3" ? 3 : 1;
    if (a.size() % per != 0) throw osc::ArgError(command + " takes its values in groups of " + std::to_string(per));
    worker_.post([=, this] {
        const BufferData* cur = workerBuffers_[static_cast<size_t>(b)];
        if (!cur) { failAsync(client, "/b_gen", "buffer " + std::to_string(b) + " is not loaded", completion); return; }
        try {
            auto next = BufferData::zeros(cur->numFrames, cur->numChannels, cur->sampleRate, &budget(), "buffer " + std::to_string(b));
            if (!(flags & 4)) std::copy_n(cur->samples.get(), cur->numFrames * cur->numChannels, next->samples.get());
            next->path = cur->path;
            const int64_t n = cur->numFrames;
            float* x = next->channel(0); // the first channel, as scsynth fills a buffer's samples
            for (int64_t i = 0; i < n; ++i) {
                const double t = static_cast<double>(i) / static_cast<double>(n); // one cycle over the buffer
                double v = 0.0;
                if (command == "cheby") {
                    const double u = 2.0 * t - 1.0; // -1 .. 1
                    for (size_t k = 0; k < a.size(); ++k) v += a[k] * std::cos(static_cast<double>(k + 1) * std::acos(std::clamp(u, -1.0, 1.0)));
                } else {
                    for (size_t k = 0; k < a.size(); k += per) {
                        const double freq = per == 1 ? static_cast<double>(k + 1) : a[k];
                        const double amp = per == 1 ? a[k] : a[k + 1];
                        const double phase = per == 3 ? a[k + 2] : 0.0;
                        v += amp * std::sin(2.0 * std::numbers::pi * freq * t + phase);
                    }
                }
                x[i] += static_cast<float>(v);
            }
            if (flags & 1) {
                float peak = 0.0f;
                for (int64_t i = 0; i < n; ++i) peak = std::max(peak, std::fabs(x[i]));
                if (peak > 0.0f)
                    for (int64_t i = 0; i < n; ++i) x[i] /= peak;
            }
            swapBuffer(client, "/b_gen", b, std::move(next), completion);
        } catch (const std::exception& e) {
            failAsync(client, "/b_gen", e.what(), completion);
        }
    });
}

} // namespace loopd
