// The commands of scsynth that an sclang user's ordinary session sends beyond loopd's core
// (docs/OSC.md, Server): /g_dumpTree, /clearSched, /n_trace, /s_get, control buses (/c_set,
// /c_setn, /c_get, /c_getn, /n_map), buffer samples (/b_get, /b_getn, /b_set, /b_setn), /b_gen
// (sine1, sine2, sine3, cheby, copy) and /b_close. Replies and argument forms are scsynth's
// (Server Command Reference).
//
// Threads: the handlers run on the control thread; buffer jobs on the worker (the buffer table
// the worker keeps is its own), and buffers change copy-on-write: the audio thread reads the old
// data until the new is swapped in.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "server/engine/BufferData.h"
#include "server/control/Controller.h"

namespace loopd {

void Controller::registerScsynthExtras() {
    on("/g_dumpTree", &Controller::hGDumpTree);
    on("/clearSched", &Controller::hClearSched);
    on("/n_trace", &Controller::hNTrace);
    on("/s_get", &Controller::hSGet);
    on("/c_set", &Controller::hCSet);
    on("/c_setn", &Controller::hCSetn);
    on("/c_get", &Controller::hCGet);
    on("/c_getn", &Controller::hCGetn);
    on("/n_map", &Controller::hNMap);
    on("/b_get", &Controller::hBGet);
    on("/b_getn", &Controller::hBGetn);
    on("/b_set", &Controller::hBSet);
    on("/b_setn", &Controller::hBSetn);
    on("/b_gen", &Controller::hBGen);
    on("/b_close", &Controller::hBClose);
}

// ---------------------------------------------------------------------------------------------
// Nodes

void Controller::hGDumpTree(Msg& m) {
    do {
        const int32_t id = m.args.int32("group id");
        const int32_t flag = m.args.atEnd() ? 0 : m.args.int32("flag");
        auto* s = new TreeSnapshot;
        s->rootId = id;
        s->withControls = flag != 0;
        s->dump = true;
        s->entries.reserve(static_cast<size_t>(engine_.config().maxNodes) + 1);
        push(m, cmd::QueryTree{s});
    } while (!m.args.atEnd());
}

void Controller::dumpTree(const TreeSnapshot& s) {
    // As scsynth prints it: a line per node, indented by depth.
    spdlog::info("NODE TREE Group {}", s.rootId);
    std::vector<int> left; // children still to come at each depth
    for (size_t k = 0; k < s.entries.size(); ++k) {
        const auto& e = s.entries[k];
        if (k == 0) {
            left.push_back(std::max(0, e.numChildren));
            continue;
        }
        const std::string indent(3 * left.size(), ' ');
        if (e.numChildren >= 0) {
            spdlog::info("{}{} group", indent, e.id);
        } else {
            const char* kind = Node::kindName(static_cast<Node::Kind>(e.kind));
            if (s.withControls) spdlog::info("{}{} {}\n{}  buf: {} gain: {}", indent, e.id, kind, indent, e.buf, e.gain);
            else spdlog::info("{}{} {}", indent, e.id, kind);
        }
        if (!left.empty()) --left.back();
        if (e.numChildren > 0) left.push_back(e.numChildren);
        while (!left.empty() && left.back() == 0) left.pop_back();
    }
    if (s.truncated) spdlog::warn("/g_dumpTree: tree too large, cut short");
}

void Controller::hClearSched(Msg& m) {
    m.args.expectEnd();
    Msg now{m.address, m.args, 0, m.client};
    push(now, cmd::ClearSched{});
}

void Controller::hNTrace(Msg& m) {
    do push(m, cmd::Query{m.args.int32("node id"), true});
    while (!m.args.atEnd());
}

void Controller::hSGet(Msg& m) {
    const int32_t id = m.args.int32("node id");
    if (m.args.atEnd()) throw osc::ArgError("no parameters named");
    std::vector<ParamId> params;
    std::string name;
    while (!m.args.atEnd()) params.push_back(paramArg(m.args, name));
    pushInChunks<cmd::GetParams>(m, id, params);
}

void Controller::hNMap(Msg& m) {
    const int32_t id = m.args.int32("node id");
    if (m.args.atEnd()) throw osc::ArgError("no parameter and bus given");
    std::vector<cmd::MapParam> maps;
    std::string name;
    while (!m.args.atEnd()) {
        const ParamId p = paramArg(m.args, name);
        const int32_t bus = m.args.int32("control bus");
        if (bus >= engine_.config().numControlBuses)
            throw osc::ArgError("control bus " + std::to_string(bus) + " out of range (0.." + std::to_string(engine_.config().numControlBuses - 1) + ", -1 unmaps)");
        maps.push_back(cmd::MapParam{id, p, bus < 0 ? -1 : bus});
    }
    for (const auto& mp : maps)
        if (!push(m, mp)) return;
}

// ---------------------------------------------------------------------------------------------
// Control buses

int32_t Controller::busIndex(Msg& m, const char* what, int32_t count) {
    const int32_t b = m.args.int32(what);
    if (b < 0 || count < 0 || static_cast<int64_t>(b) + count > engine_.config().numControlBuses)
        throw osc::ArgError("control bus " + std::to_string(b) + (count > 1 ? " + " + std::to_string(count) : std::string()) +
                            " out of range (0.." + std::to_string(engine_.config().numControlBuses - 1) + ")");
    return b;
}

void Controller::hCSet(Msg& m) {
    std::vector<std::pair<int32_t, float>> pairs;
    do {
        const int32_t b = busIndex(m, "control bus", 1);
        pairs.emplace_back(b, m.args.number("value"));
    } while (!m.args.atEnd());
    for (const auto& [b, v] : pairs) {
        cmd::SetBus s{};
        s.first = b;
        s.count = 1;
        s.values[0] = v;
        if (!push(m, s)) return;
    }
}

void Controller::hCSetn(Msg& m) {
    std::vector<cmd::SetBus> sets;
    do {
        const int32_t first = m.args.int32("first control bus");
        const int32_t count = m.args.int32("number of buses");
        if (count < 0 || first < 0 || static_cast<int64_t>(first) + count > engine_.config().numControlBuses)
            throw osc::ArgError("control buses " + std::to_string(first) + " + " + std::to_string(count) + " out of range (0.." +
                                std::to_string(engine_.config().numControlBuses - 1) + ")");
        for (int32_t i = 0; i < count; i += kMaxParamsPerCommand) {
            cmd::SetBus s{};
            s.first = first + i;
            for (int32_t k = i; k < count && s.count < kMaxParamsPerCommand; ++k) s.values[s.count++] = m.args.number("value");
            sets.push_back(s);
        }
    } while (!m.args.atEnd());
    for (const auto& s : sets)
        if (!push(m, s)) return;
}

void Controller::hCGet(Msg& m) {
    // Through the engine, so that a /c_set sent before it has been applied.
    std::vector<int32_t> buses;
    do buses.push_back(busIndex(m, "control bus", 1));
    while (!m.args.atEnd());
    for (int32_t b : buses)
        if (!push(m, cmd::GetBus{b, 1, false})) return;
}

void Controller::hCGetn(Msg& m) {
    std::vector<cmd::GetBus> gets;
    do {
        const int32_t first = m.args.int32("first control bus");
        const int32_t count = m.args.int32("number of buses");
        if (count < 1 || first < 0 || static_cast<int64_t>(first) + count > engine_.config().numControlBuses)
            throw osc::ArgError("control buses " + std::to_string(first) + " + " + std::to_string(count) + " out of range (0.." +
                                std::to_string(engine_.config().numControlBuses - 1) + ")");
        for (int32_t i = 0; i < count; i += kMaxParamsPerCommand)
            gets.push_back(cmd::GetBus{first + i, std::min<int32_t>(kMaxParamsPerCommand, count - i), true});
    } while (!m.args.atEnd());
    for (const auto& g : gets)
        if (!push(m, g)) return;
}

// ---------------------------------------------------------------------------------------------
// Buffer samples. An index is a sample of the interleaved buffer (frame * channels + channel),
// as in scsynth.

void Controller::hBGet(Msg& m) {
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

void Controller::hBGetn(Msg& m) {
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

void Controller::changeSamples(uint16_t client, const char* address, int32_t b, std::vector<std::pair<int32_t, float>> values) {
    worker_.post([=, this] {
        const BufferData* cur = workerBuffers_[static_cast<size_t>(b)];
        if (!cur) { fail(client, address, "buffer " + std::to_string(b) + " is not loaded"); return; }
        const int64_t total = cur->numFrames * cur->numChannels;
        for (const auto& [i, v] : values)
            if (i < 0 || i >= total) { fail(client, address, "sample index " + std::to_string(i) + " out of range (buffer " + std::to_string(b) + " has " + std::to_string(total) + ")"); return; }
        try {
            auto next = BufferData::zeros(cur->numFrames, cur->numChannels, cur->sampleRate, &budget_, "buffer " + std::to_string(b));
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

void Controller::hBSet(Msg& m) {
    const int32_t b = bufnum(m);
    std::vector<std::pair<int32_t, float>> values;
    do {
        const int32_t i = m.args.int32("sample index");
        values.emplace_back(i, m.args.number("value"));
    } while (!m.args.atEnd());
    changeSamples(m.client, "/b_set", b, std::move(values));
}

void Controller::hBSetn(Msg& m) {
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

void Controller::hBClose(Msg& m) {
    // loopd writes a file at once (/b_write): there is never one left open to close.
    const int32_t b = bufnum(m);
    m.args.expectEnd();
    const uint32_t completion = m.completion;
    finishAsync(m.client, "/b_close", b, completion);
}

void Controller::hBGen(Msg& m) {
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
                auto next = BufferData::zeros(to->numFrames, to->numChannels, to->sampleRate, &budget_, "buffer " + std::to_string(b));
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
            auto next = BufferData::zeros(cur->numFrames, cur->numChannels, cur->sampleRate, &budget_, "buffer " + std::to_string(b));
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
