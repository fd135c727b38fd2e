#pragma once
// Test harness: the real Controller and Engine, driven by OSC packets exactly as the network
// would deliver them, rendered block by block without a device (timetags are seconds from
// sample 0, as in nrt). Replies are captured and decoded.
#include <sndfile.h>

#include <osc/OscOutboundPacketStream.h>
#include <osc/OscReceivedElements.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "server/control/Controller.h"
#include "server/engine/Engine.h"
#include "server/io/PathPolicy.h"
#include "server/io/Recorder.h"
#include "server/engine/StretchWorker.h"
#include "server/io/Worker.h"

namespace loopd::test {

using Arg = std::variant<int32_t, float, double, std::string, int64_t>;

struct ReplyMsg {
    std::string address;
    std::vector<Arg> args;
    std::string str(size_t i) const { return std::get<std::string>(args.at(i)); }
    int32_t i(size_t k) const { return std::get<int32_t>(args.at(k)); }
    double num(size_t k) const {
        const Arg& a = args.at(k);
        if (auto* x = std::get_if<int32_t>(&a)) return *x;
        if (auto* f = std::get_if<float>(&a)) return *f;
        if (auto* d = std::get_if<double>(&a)) return *d;
        return 0;
    }
};

// An OSC packet under construction.
class Packet {
public:
    explicit Packet(const char* address) : buf_(1 << 16), s_(buf_.data(), buf_.size()) { s_ << ::osc::BeginMessage(address); }
    Packet& operator,(int v) { s_ << static_cast<::osc::int32>(v); return *this; }
    Packet& operator,(float v) { s_ << v; return *this; }
    Packet& operator,(double v) { s_ << static_cast<float>(v); return *this; }
    Packet& operator,(const char* v) { s_ << v; return *this; }
    Packet& operator,(const std::string& v) { s_ << v.c_str(); return *this; }
    std::vector<char> message() { s_ << ::osc::EndMessage; return {s_.Data(), s_.Data() + s_.Size()}; }

private:
    std::vector<char> buf_;
    ::osc::OutboundPacketStream s_;
};

template <typename... A>
std::vector<char> msg(const char* address, A... args) {
    Packet p(address);
    ((p, args), ...);
    return p.message();
}

inline std::vector<char> bundleAt(double seconds, const std::vector<std::vector<char>>& messages) {
    std::vector<char> out = {'#', 'b', 'u', 'n', 'd', 'l', 'e', '\0'};
    uint64_t tag = static_cast<uint64_t>(std::llround(seconds * 4294967296.0));
    if (tag == 1) tag = 2; // 1 would mean "now"
    for (int k = 7; k >= 0; --k) out.push_back(static_cast<char>((tag >> (8 * k)) & 0xff));
    for (const auto& m : messages) {
        const auto n = static_cast<uint32_t>(m.size());
        for (int k = 3; k >= 0; --k) out.push_back(static_cast<char>((n >> (8 * k)) & 0xff));
        out.insert(out.end(), m.begin(), m.end());
    }
    return out;
}

inline std::vector<Arg> decodeArgs(const ::osc::ReceivedMessage& m) {
    std::vector<Arg> out;
    for (auto it = m.ArgumentsBegin(); it != m.ArgumentsEnd(); ++it) {
        if (it->IsInt32()) out.emplace_back(it->AsInt32());
        else if (it->IsFloat()) out.emplace_back(it->AsFloat());
        else if (it->IsDouble()) out.emplace_back(it->AsDouble());
        else if (it->IsString()) out.emplace_back(std::string(it->AsString()));
        else if (it->IsInt64()) out.emplace_back(static_cast<int64_t>(it->AsInt64()));
    }
    return out;
}

class OfflineServer {
public:
    explicit OfflineServer(EngineConfig cfg = defaultConfig(), std::vector<std::string> roots = {},
                           const ControllerOptions& copts = ControllerOptions())
        : config_(cfg), engine_(cfg), worker_(true), recorder_(cfg.sampleRate, true), paths_(std::move(roots)),
          controller_(engine_, worker_, recorder_, paths_, withOffline(copts)) {
        controller_.setSender([this](const osc::Endpoint&, const char* data, size_t size) {
            ::osc::ReceivedMessage m(::osc::ReceivedPacket(data, static_cast<::osc::osc_bundle_element_size_t>(size)));
            replies.push_back({m.AddressPattern(), decodeArgs(m)});
            return true;
        });
        for (int c = 0; c < cfg.numOutputs; ++c) output.emplace_back();
        from_.kind = osc::Endpoint::Kind::Udp;
        engine_.setMidiOutput(true); // midiOut collects what a MIDI driver would send
        if (cfg.stretchAhead) { // as the real-time server runs stretched players
            stretchWorker_ = std::make_unique<StretchWorker>();
            stretchWorker_->start();
            controller_.setStretchWorker(stretchWorker_.get());
        }
    }
    ~OfflineServer() {
        if (stretchWorker_) stretchWorker_->stop();
    }

    static EngineConfig defaultConfig() {
        EngineConfig c;
        c.realtimeClock = false;
        c.maxNodes = 512;
        c.maxBuffers = 128;
        c.commandQueueSize = 1 << 14;
        c.schedulerCapacity = 1 << 14;
        return c;
    }

    void packet(const std::vector<char>& p) { controller_.handlePacket(p.data(), p.size(), from_); }
    template <typename... A>
    void send(const char* address, A... args) { packet(msg(address, args...)); }
    template <typename... A>
    void at(double seconds, const char* address, A... args) { packet(bundleAt(seconds, {msg(address, args...)})); }

    // Render `frames` more frames (rounded up to whole blocks); input is silence unless set.
    void render(int64_t frames) {
        frames += std::max<int64_t>(0, engine_.latencySamples() - rendered_);
        const int B = config_.blockSize;
        std::vector<float> out(static_cast<size_t>(config_.numOutputs * B));
        std::vector<float*> outPtr;
        for (int c = 0; c < config_.numOutputs; ++c) outPtr.push_back(out.data() + c * B);
        std::vector<float> in(static_cast<size_t>(std::max(1, config_.numInputs) * B));
        std::vector<const float*> inPtr;
        for (int c = 0; c < std::max(1, config_.numInputs); ++c) inPtr.push_back(in.data() + c * B);
        for (int64_t done = 0; done < frames; done += B) {
            for (int c = 0; c < config_.numInputs; ++c)
                for (int i = 0; i < B; ++i) {
                    const int64_t k = rendered_ + i;
                    in[static_cast<size_t>(c * B + i)] = c < static_cast<int>(input.size()) && k < static_cast<int64_t>(input[static_cast<size_t>(c)].size()) ? input[static_cast<size_t>(c)][static_cast<size_t>(k)] : 0.0f;
                }
            engine_.process(inPtr.data(), outPtr.data());
            // MIDI out, by the index in `output` it leaves with (timeline sample).
            if (collectMidi) engine_.drainMidiOutFrom(rendered_, B, [&](int offset, const uint8_t* bytes, int size) {
                midi::MidiEvent e;
                e.sample = rendered_ + offset - engine_.latencySamples();
                e.size = static_cast<uint8_t>(size);
                for (int i = 0; i < size && i < 3; ++i) e.bytes[i] = bytes[i];
                midiOut.push_back(e);
            });
            controller_.pollReplies();
            recorder_.drainAll();
            // Drop the limiter's latency, as the nrt writer does: output[k] is timeline sample k.
            const int skip = static_cast<int>(std::clamp<int64_t>(engine_.latencySamples() - rendered_, 0, B));
            for (int c = 0; c < config_.numOutputs; ++c)
                output[static_cast<size_t>(c)].insert(output[static_cast<size_t>(c)].end(), outPtr[static_cast<size_t>(c)] + skip, outPtr[static_cast<size_t>(c)] + B);
            rendered_ += B;
        }
    }
    void renderSeconds(double s) { render(static_cast<int64_t>(std::ceil(s * config_.sampleRate))); }

    // Replies with this address (and, for /fail and /done, this command).
    std::vector<ReplyMsg> find(const std::string& address, const std::string& command = "") const {
        std::vector<ReplyMsg> r;
        for (const auto& m : replies)
            if (m.address == address && (command.empty() || (!m.args.empty() && std::holds_alternative<std::string>(m.args[0]) && m.str(0) == command)))
                r.push_back(m);
        return r;
    }
    void stopRecordings() { controller_.stopRecordings(); render(config_.blockSize); }

    Engine& engine() { return engine_; }
    StretchWorker* stretchWorker() { return stretchWorker_.get(); }
    Controller& controller() { return controller_; }
    const EngineConfig& config() const { return config_; }

    std::vector<std::vector<float>> output; // planar, everything rendered so far
    std::vector<std::vector<float>> input;  // planar input fed to the engine
    std::vector<midi::MidiEvent> midiOut;    // MIDI the engine sent (sample: its timeline sample)
    bool collectMidi = true;                 // false: as with no MIDI driver (nothing drains it here)
    std::vector<ReplyMsg> replies;

private:
    static ControllerOptions withOffline(const ControllerOptions& options) {
        ControllerOptions o = options;
        o.offline = true;
        return o;
    }
    EngineConfig config_;
    Engine engine_;
    std::unique_ptr<StretchWorker> stretchWorker_; // destroyed before the engine frees players
    Worker worker_;
    Recorder recorder_;
    PathPolicy paths_;
    Controller controller_;
    osc::Endpoint from_;
    int64_t rendered_ = 0;
};

// The harness's default configuration with another block size.
inline EngineConfig cfgWithBlock(int block) {
    EngineConfig c = OfflineServer::defaultConfig();
    c.blockSize = block;
    c.maxBuffers = 8192;
    return c;
}

// A temporary directory removed at the end of the test.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        char tmpl[] = "/tmp/loopd-test-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { std::error_code ec; std::filesystem::remove_all(path, ec); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

// Writes planar float data to a WAV file (32-bit float).
inline void writeWav(const std::string& path, const std::vector<std::vector<float>>& ch, int rate, int format = SF_FORMAT_WAV | SF_FORMAT_FLOAT) {
    SF_INFO info{};
    info.channels = static_cast<int>(ch.size());
    info.samplerate = rate;
    info.format = format;
    SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
    if (!f) throw std::runtime_error("cannot write test file " + path);
    const size_t n = ch.at(0).size();
    std::vector<float> inter(n * ch.size());
    for (size_t i = 0; i < n; ++i)
        for (size_t c = 0; c < ch.size(); ++c) inter[i * ch.size() + c] = ch[c][i];
    sf_writef_float(f, inter.data(), static_cast<sf_count_t>(n));
    sf_close(f);
}

inline std::vector<std::vector<float>> readWav(const std::string& path, int* rate = nullptr) {
    SF_INFO info{};
    SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
    if (!f) throw std::runtime_error("cannot read " + path);
    std::vector<float> inter(static_cast<size_t>(info.frames * info.channels));
    sf_readf_float(f, inter.data(), info.frames);
    sf_close(f);
    if (rate) *rate = info.samplerate;
    std::vector<std::vector<float>> out(static_cast<size_t>(info.channels), std::vector<float>(static_cast<size_t>(info.frames)));
    for (sf_count_t i = 0; i < info.frames; ++i)
        for (int c = 0; c < info.channels; ++c) out[static_cast<size_t>(c)][static_cast<size_t>(i)] = inter[static_cast<size_t>(i * info.channels + c)];
    return out;
}

// Signal measurements.
inline int64_t firstNonZero(const std::vector<float>& x, int64_t from = 0) {
    for (size_t i = static_cast<size_t>(from); i < x.size(); ++i) if (x[i] != 0.0f) return static_cast<int64_t>(i);
    return -1;
}
inline float maxAbs(const std::vector<float>& x, size_t from = 0, size_t to = SIZE_MAX) {
    float m = 0;
    for (size_t i = from; i < std::min(to, x.size()); ++i) m = std::max(m, std::fabs(x[i]));
    return m;
}
inline float maxStep(const std::vector<float>& x, size_t from = 0, size_t to = SIZE_MAX) {
    float m = 0;
    for (size_t i = std::max<size_t>(from, 1); i < std::min(to, x.size()); ++i) m = std::max(m, std::fabs(x[i] - x[i - 1]));
    return m;
}
inline double rms(const std::vector<float>& x, size_t from, size_t to) {
    double s = 0;
    for (size_t i = from; i < to; ++i) s += static_cast<double>(x[i]) * x[i];
    return std::sqrt(s / static_cast<double>(to - from));
}
// Frequency from rising zero crossings, interpolated.
inline double zeroCrossingHz(const std::vector<float>& x, size_t from, size_t to, double rate) {
    double first = -1, last = -1;
    int count = 0;
    for (size_t i = from + 1; i < to; ++i) {
        if (x[i - 1] < 0 && x[i] >= 0) {
            const double t = static_cast<double>(i - 1) + x[i - 1] / (x[i - 1] - x[i]);
            if (first < 0) first = t; else ++count;
            last = t;
        }
    }
    return count > 0 ? count * rate / (last - first) : 0.0;
}
inline std::vector<float> sine(double hz, double amp, size_t n, double rate, double phase = 0) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(amp * std::sin(2 * M_PI * hz * static_cast<double>(i) / rate + phase));
    return v;
}

} // namespace loopd::test
