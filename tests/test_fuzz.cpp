// A seeded mutation fuzzer over the real packet path (Controller::handlePacket into a running
// Engine, as the network delivers packets): a corpus of every documented message family, mutated
// by bit flips, truncation, lying sizes, random type tags, splices and deep nesting. No packet
// may crash or hang the server; afterwards it still answers and renders.
//
//   LOOPD_FUZZ_SEED=N      reproduce a run (the seed is printed at the start)
//   LOOPD_FUZZ_PACKETS=N   packets to send (default 20000; the long run: 1000000)
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>

#include "osc/Validate.h"
#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

uint64_t envOr(const char* name, uint64_t fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

std::vector<char> withTags(const char* address, const std::string& tags, const std::vector<char>& data) {
    std::vector<char> out;
    auto padded = [&](const std::string& s) {
        out.insert(out.end(), s.begin(), s.end());
        out.push_back('\0');
        while (out.size() % 4) out.push_back('\0');
    };
    padded(address);
    padded("," + tags);
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

// Every documented message family, with well-formed arguments (files live in `dir`).
std::vector<std::vector<char>> corpus(const TempDir& dir) {
    const std::string wav = dir.file("a.wav"), out = dir.file("o.wav"), session = dir.file("s.slsess");
    const char* url = "osc.udp://127.0.0.1:9/";
    std::vector<std::vector<char>> c = {
        msg("/status"), msg("/version"), msg("/notify", 1), msg("/notify", 0), msg("/dumpOSC", 0), msg("/sync", 7),
        msg("/g_new", 10, 0, 0), msg("/g_new", 11, 1, 10, 12, 0, 10),
        msg("/s_new", "player", 100, 0, 10, "buf", 1, "loop", 1, "rate", 1.5f, "stretch", "rb2", "follow", 1),
        msg("/s_new", "player", -1, 1, 0, "buf", 2, "startFrac", 0.5f, "pitch", 3.0f),
        msg("/s_new", "input", 101, 0, 0), msg("/s_new", "eq3", 102, 1, 10, "low", 0.5f),
        msg("/s_new", "filter", 103, 1, 10, "mode", "hp", "cutoffHz", 800.0f, "lfoShape", "saw"),
        msg("/s_new", "delay", 104, 1, 10), msg("/s_new", "reverb", 105, 1, 10), msg("/s_new", "stutter", 106, 1, 10),
        msg("/s_new", "limiter", 107, 1, 0), msg("/s_new", "gain", 108, 1, 0), msg("/s_new", "looper", 109, 1, 0),
        msg("/n_set", 100, "gain", 0.5f, "pan", -0.3f), msg("/n_ramp", 100, "gain", 0.0f, 2.0f), msg("/n_free", 100),
        msg("/n_run", 100, 0, 101, 1), msg("/n_before", 101, 100), msg("/n_after", 100, 101), msg("/n_query", 10, 100),
        msg("/g_freeAll", 0), msg("/g_deepFree", 10), msg("/g_queryTree", 0, 1),
        msg("/b_alloc", 3, 48000, 2), msg("/b_allocRead", 1, wav.c_str(), 0, -1), msg("/b_read", 1, wav.c_str(), 0, 100, 10),
        msg("/b_write", 1, out.c_str(), "wav", "float"), msg("/b_free", 3), msg("/b_zero", 1), msg("/b_query", 1, 2),
        msg("/rec_start", dir.file("r.wav").c_str(), 0), msg("/rec_stop"),
        msg("/tempo", 128.0f, 1.0f), msg("/set_tempo", 100.0f), msg("/set_meter", 3), msg("/print_clock", 0),
        msg("/dance/total_movement", 0.3f), msg("/tempo_source", "analysis", 1), msg("/analysis/bpm", 128.0f, 0.9f),
        msg("/analysis_input", 0), msg("/tempo_source"), msg("/tempo_source", "manual"),
        msg("/add_midi_binding", "0 n 38  note record -1  0 1", "exclusive"), msg("/remove_midi_binding", "0 n 38  note record -1", ""),
        msg("/get_all_midi_bindings", url, "/b"), msg("/clear_midi_bindings"), msg("/tempo_tap"), msg("/load_buffer", 100, wav.c_str(), "kick"),
        msg("/play_stem", 100, 1.0f, 0.8f, 1, 0.25f), msg("/stop_stem", 100), msg("/stem_volume", 100, 0.5f),
        msg("/crossfade_levels", 0.2f, 0.8f), msg("/deck_levels", 1.0f, 0.5f, 0.0f, 1.0f), msg("/deck_filter", "A", "low", 0.5f),
        msg("/deck_eq", "B", "mid", 20.0f), msg("/deck_eq_all", "C", 50.0f, 0.0f, 100.0f), msg("/reset"),
        msg("/play", "A", wav.c_str(), 0.5f), msg("/cue", "B", wav.c_str(), 0.25f), msg("/start_group", 1.0f, "A", "B"),
        msg("/cue_section", "C", dir.file("a.json").c_str(), 124.0f, 1), msg("/cue_section", "D", dir.file("a.json").c_str()),
        msg("/fade", "A", 0.5f, 2.0f), msg("/schedule_c_at", 3.0f), msg("/get_status"), msg("/test_tone", 440.0f),
        msg("/mixer_cleanup"),
        msg("/ping", url, "/pong"), msg("/loop_add", 2, 4.0f), msg("/loop_del", -1), msg("/set", "tempo", 120.0f),
        msg("/get", "tempo", url, "/val"), msg("/register_auto_update", "state", 100, url, "/au"),
        msg("/sl/0/hit", "record"), msg("/sl/-1/hit", "overdub"), msg("/sl/-3/hit", "undo"), msg("/sl/0/hit", "capture", 2),
        msg("/sl/0/set", "feedback", 0.5f), msg("/sl/0/get", "loop_len", url, "/v"), msg("/sl/0/down", "record"),
        msg("/sl/0/up", "record"), msg("/sl/0/register_auto_update", "loop_pos", 100, url, "/au"),
        msg("/sl/0/save_loop", out.c_str(), "float", "little", url, "/err"), msg("/sl/0/load_loop", wav.c_str(), url, "/err"),
        msg("/save_session", session.c_str(), url, "/err"), msg("/load_session", session.c_str(), url, "/err"),
        msg("/add_midi_binding", "0 n 60  note record 0  0 1  norm 0 127"), msg("/learn_midi_binding", "0 cc 0  set wet 0", "", url, "/l"),
        msg("/get_next_midi_event", url, "/n"), msg("/cancel_midi_learn", url, "/l"), msg("/midi_osc", "0 cc 1", 0.0f, 1.0f, "/tempo", "$"),
        msg("/midi_osc_remove", "0 cc 1"), msg("/midi_osc_list"), msg("/tempo_source", "midi"), msg("/tempo_source", "manual"),
        msg("/link", 1), msg("/link"), msg("/link_beat"), msg("/link_startstop", 1), msg("/link_play", 1), msg("/tempo_source", "link"),
        msg("/set", "output_midi_clock", 1.0f),
        msg("/jam_host", 0, 1), msg("/jam_join", "http://127.0.0.1:9", "fuzz"), msg("/jam"), msg("/jam_leave"),
        msg("/bank_save", "a", 1, "tag"), msg("/bank_list", 120.0f, 4.0f), msg("/bank_load", "a", "sl:0", "bar"),
        msg("/project_save", dir.file("proj").c_str()), msg("/project_load", dir.file("proj").c_str()),
        msg("/bogus", 1, 2.0f, "three"),
    };
    // Every argument type OSC 1.0/1.1 and oscpack know, and nested bundles.
    std::vector<char> data;
    auto be32 = [&](uint32_t v) { for (int k = 3; k >= 0; --k) data.push_back(static_cast<char>((v >> (8 * k)) & 0xff)); };
    be32(1); be32(0x3f800000); be32(0); be32(42); be32(0); be32(0); be32(7); data.insert(data.end(), {'x', 'y', 'z', 'w', 'q', 0, 0, 0});
    be32(1); be32(2); be32(3); be32(4);
    c.push_back(withTags("/n_set", "ifhtbicrm", data));
    c.push_back(withTags("/sl/0/save_loop", "TFNI[is]Sd", std::vector<char>(20, 0)));
    c.push_back(bundleAt(0.5, {msg("/n_set", 100, "gain", 0.25f), msg("/sl/0/hit", "record")}));
    c.push_back(bundleAt(2.0, {bundleAt(3.0, {msg("/tempo", 90.0f)}), msg("/g_new", 20, 0, 0)}));
    return c;
}

class Mutator {
public:
    explicit Mutator(uint64_t seed) : rng_(seed) {}

    std::vector<char> mutate(std::vector<char> p, const std::vector<std::vector<char>>& corpus) {
        const size_t rounds = 1 + pick(3);
        for (size_t r = 0; r < rounds; ++r) {
            switch (pick(10)) {
            case 0: // bit flips
                for (size_t k = 1 + pick(8); k > 0 && !p.empty(); --k) p[pick(p.size())] ^= static_cast<char>(1 << pick(8));
                break;
            case 1: { // interesting bytes
                static const char v[] = {0, -1, 0x7f, -128, ',', '#', '/', 's', 'b', 'h'};
                for (size_t k = 1 + pick(4); k > 0 && !p.empty(); --k) p[pick(p.size())] = v[pick(sizeof v)];
                break;
            }
            case 2: // truncation, aligned or not
                if (!p.empty()) p.resize(pick(p.size()));
                break;
            case 3: { // lying sizes: a 4-byte word becomes a huge, negative, small or off-by-some value
                if (p.size() < 4) break;
                static const uint32_t v[] = {0, 1, 3, 4, 5, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffc, 64, 65536};
                const size_t at = pick(p.size() / 4) * 4;
                const uint32_t x = pick(2) ? v[pick(sizeof v / sizeof v[0])] : static_cast<uint32_t>(p.size() + pick(64) - 32);
                for (int k = 0; k < 4; ++k) p[at + static_cast<size_t>(k)] = static_cast<char>((x >> (8 * (3 - k))) & 0xff);
                break;
            }
            case 4: { // random type tags in place of the real ones
                auto comma = std::find(p.begin(), p.end(), ',');
                static const char tags[] = "ifsbhtdScrmTFNI[]ifsb\x01z";
                for (auto it = comma + (comma != p.end()); it != p.end() && *it != '\0'; ++it)
                    if (pick(3) == 0) *it = tags[pick(sizeof tags - 1)];
                break;
            }
            case 5: // extension with random bytes
                for (size_t k = pick(16); k > 0; --k) p.push_back(static_cast<char>(pick(256)));
                break;
            case 6: { // deep nesting
                const size_t depth = 1 + pick(20);
                for (size_t d = 0; d < depth; ++d) p = bundleAt(pick(2) ? 0.0 : static_cast<double>(pick(100)) / 10, {p});
                break;
            }
            case 7: { // splice with another corpus entry
                const auto& o = corpus[pick(corpus.size())];
                const size_t cut = p.empty() ? 0 : pick(p.size());
                const size_t from = o.empty() ? 0 : pick(o.size());
                p.resize(cut);
                p.insert(p.end(), o.begin() + static_cast<long>(from), o.end());
                break;
            }
            case 8: // a bundle of several, one of them this
                p = bundleAt(0.0, {p, corpus[pick(corpus.size())], corpus[pick(corpus.size())]});
                break;
            default: // a byte removed or inserted (shifts everything after it)
                if (!p.empty() && pick(2)) p.erase(p.begin() + static_cast<long>(pick(p.size())));
                else p.insert(p.begin() + static_cast<long>(pick(p.size() + 1)), static_cast<char>(pick(256)));
            }
        }
        return p;
    }
    size_t pick(size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

private:
    std::mt19937_64 rng_;
};

} // namespace

// The validator alone: what it accepts, oscpack decodes without an exception (so that nothing
// oscpack would stumble on gets past it), over the mutated corpus.
TEST(Fuzz, WhatTheValidatorAcceptsOscpackDecodes) {
    TempDir dir;
    const auto c = corpus(dir);
    for (const auto& p : c) EXPECT_EQ(loopd::osc::checkPacket(p.data(), p.size()), "") << std::string(p.data());
    const uint64_t seed = envOr("LOOPD_FUZZ_SEED", static_cast<uint64_t>(std::random_device{}()));
    std::printf("fuzz seed: %llu (LOOPD_FUZZ_SEED=%llu reproduces)\n", static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
    Mutator m(seed);
    int accepted = 0;
    for (int i = 0; i < 200000; ++i) {
        const auto p = m.mutate(c[m.pick(c.size())], c);
        if (!loopd::osc::checkPacket(p.data(), p.size()).empty()) continue;
        ++accepted;
        try {
            ::osc::ReceivedPacket rp(p.data(), static_cast<::osc::osc_bundle_element_size_t>(p.size()));
            const auto args = [](const ::osc::ReceivedMessage& msg) {
                for (auto a = msg.ArgumentsBegin(); a != msg.ArgumentsEnd(); ++a) (void)a->TypeTag();
            };
            std::function<void(const ::osc::ReceivedBundle&)> walk = [&](const ::osc::ReceivedBundle& b) {
                for (auto it = b.ElementsBegin(); it != b.ElementsEnd(); ++it) {
                    if (it->IsBundle()) walk(::osc::ReceivedBundle(*it));
                    else args(::osc::ReceivedMessage(*it));
                }
            };
            if (rp.IsBundle()) walk(::osc::ReceivedBundle(rp));
            else args(::osc::ReceivedMessage(rp));
        } catch (const ::osc::Exception& e) {
            std::string hex;
            for (char ch : p) { char b[4]; std::snprintf(b, sizeof b, "%02x ", static_cast<unsigned char>(ch)); hex += b; }
            ADD_FAILURE() << "accepted, but oscpack refuses it: " << e.what() << " (seed " << seed << ", packet " << i << "): " << hex;
            break;
        }
    }
    std::printf("%d of 200000 mutated packets were well formed\n", accepted);
    EXPECT_GT(accepted, 10000); // the mutations leave plenty for the command handlers to chew on
}

TEST(Fuzz, NoPacketCrashesOrHangsTheServer) {
    spdlog::set_level(spdlog::level::off);
    TempDir dir;
    writeWav(dir.file("a.wav"), {sine(220, 0.5, 24000, 48000), sine(330, 0.5, 24000, 48000)}, 48000);
    // A structure JSON for /cue_section: an intro to 0.1 s, one section to 0.4 s, beats every 0.1 s.
    std::ofstream(dir.file("a.json")) << R"({"path": "a.wav", "bpm": 600, "beats": [0, 0.1, 0.2, 0.3, 0.4],)"
                                         R"( "segments": [{"start": 0, "end": 0.1, "label": "intro"}, {"start": 0.1, "end": 0.4, "label": "verse"}]})";
    ControllerOptions o;
    o.maxMemoryBytes = int64_t(384) << 20; // a client may not take more
    o.loopSeconds = 4.0;
    o.undoSeconds = 4.0;
    EngineConfig cfg = OfflineServer::defaultConfig();
    cfg.captureSeconds = 4.0;
    OfflineServer s(cfg, {dir.path.string()}, o);
    const auto c = corpus(dir);
    const uint64_t seed = envOr("LOOPD_FUZZ_SEED", static_cast<uint64_t>(std::random_device{}()));
    const uint64_t packets = envOr("LOOPD_FUZZ_PACKETS", 20000);
    std::printf("fuzz seed: %llu (LOOPD_FUZZ_SEED=%llu reproduces), %llu packets\n", static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(packets));
    std::fflush(stdout);
    Mutator m(seed);
    const auto t0 = std::chrono::steady_clock::now();
    auto slowest = std::chrono::steady_clock::duration::zero();
    uint64_t slowestPacket = 0;
    for (uint64_t i = 0; i < packets; ++i) {
        // Mostly mutants, sometimes the valid message itself (so that state builds up to mutate).
        const auto& base = c[m.pick(c.size())];
        const auto p = m.pick(8) == 0 ? base : m.mutate(base, c);
        const auto a = std::chrono::steady_clock::now();
        s.packet(p);
        const auto took = std::chrono::steady_clock::now() - a;
        if (took > slowest) { slowest = took; slowestPacket = i; }
        if (i % 32 == 31) s.render(64);
        if (s.replies.size() > 100000) s.replies.clear();
        if (s.output[0].size() > (1u << 20)) for (auto& ch : s.output) ch.clear();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%llu packets in %.1f s (%.0f per second); slowest packet %.1f ms (#%llu); memory in use %s\n",
                static_cast<unsigned long long>(packets), secs, static_cast<double>(packets) / secs,
                std::chrono::duration<double, std::milli>(slowest).count(), static_cast<unsigned long long>(slowestPacket),
                MemoryBudget::mb(s.controller().memoryBudget().used()).c_str());
    // No packet hangs the control thread (a file load of the test's small file is the slowest).
    EXPECT_LT(std::chrono::duration<double>(slowest).count(), 2.0);
    // Still serving: it answers and renders.
    s.replies.clear();
    s.send("/status");
    s.render(64);
    ASSERT_EQ(s.find("/status.reply").size(), 1u);
    EXPECT_LE(s.controller().memoryBudget().used(), o.maxMemoryBytes);
}
