// scsynth's clients as they are, offline: integer command numbers, completion
// messages, /notify client ids, negative server-chosen ids, /error, SynthDef refusals,
// /reply_format, /clearSched, /s_get, control buses and /n_map (measured on the sound), buffer
// samples (/b_set, /b_get, /b_setn, /b_getn) and /b_gen. The real sclang drives the real binary
// in tests/e2e/test_clients.py.
#include <gtest/gtest.h>

#include <cmath>

#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

// A message whose address is scsynth's command number (as sclang sends most commands).
template <typename... A>
std::vector<char> numbered(int command, A... args) {
    std::vector<char> m = msg("/x", args...);
    // "/x\0\0" is 4 bytes: replace it with the big-endian number (its first byte is 0).
    m[0] = static_cast<char>((command >> 24) & 0xff);
    m[1] = static_cast<char>((command >> 16) & 0xff);
    m[2] = static_cast<char>((command >> 8) & 0xff);
    m[3] = static_cast<char>(command & 0xff);
    return m;
}

std::vector<char> withBlob(std::vector<char> m, const std::vector<char>& blob) {
    // Append a 'b' argument to a message built by msg(): patch the type tags, then the data.
    const size_t addrEnd = (std::strlen(m.data()) + 4) & ~size_t(3);
    const size_t tagLen = std::strlen(m.data() + addrEnd);
    const size_t tagsEnd = addrEnd + ((tagLen + 4) & ~size_t(3));
    std::string tags(m.data() + addrEnd, tagLen);
    tags += 'b';
    std::vector<char> out(m.begin(), m.begin() + static_cast<long>(addrEnd));
    out.insert(out.end(), tags.begin(), tags.end());
    do out.push_back('\0'); while (out.size() % 4);
    out.insert(out.end(), m.begin() + static_cast<long>(tagsEnd), m.end());
    const auto n = static_cast<uint32_t>(blob.size());
    for (int k = 3; k >= 0; --k) out.push_back(static_cast<char>((n >> (8 * k)) & 0xff));
    out.insert(out.end(), blob.begin(), blob.end());
    while (out.size() % 4) out.push_back('\0');
    return out;
}

size_t indexOf(const std::vector<ReplyMsg>& r, const std::string& address, const std::string& first = "") {
    for (size_t i = 0; i < r.size(); ++i)
        if (r[i].address == address && (first.empty() || (!r[i].args.empty() && std::holds_alternative<std::string>(r[i].args[0]) && r[i].str(0) == first)))
            return i;
    return SIZE_MAX;
}

} // namespace

TEST(ScsynthClients, CommandNumbersWorkAsTheirNames) {
    OfflineServer s;
    s.packet(numbered(21, 1, 0, 0));                                      // /g_new 1 0 0
    s.packet(numbered(9, "player", 1000, 0, 1, "gain", 0.5f));             // /s_new
    s.packet(numbered(15, 1000, "gain", 0.25f));                           // /n_set
    s.packet(numbered(44, 1000, "gain"));                                  // /s_get
    s.render(256);
    const auto nset = s.find("/n_set");
    ASSERT_EQ(nset.size(), 1u);
    EXPECT_EQ(nset[0].i(0), 1000);
    EXPECT_EQ(nset[0].str(1), "gain");
    EXPECT_FLOAT_EQ(static_cast<float>(nset[0].num(2)), 0.25f);
    s.packet(numbered(66 + 40, 1));
    s.render(64);
    const auto f = s.find("/fail", "/?");
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].str(1), "unknown command number 106");
    s.packet(numbered(11, 1000)); // /n_free
    s.render(2048);
    EXPECT_EQ(s.find("/n_end").size(), 0u) << "no /notify: no node events";
    EXPECT_TRUE(s.find("/fail", "/n_free").empty());
}

TEST(ScsynthClients, ACompletionMessageRunsWhenTheCommandHasFinishedBeforeItsDone) {
    TempDir dir;
    writeWav(dir.file("a.wav"), {sine(440, 0.5, 4800, 48000)}, 48000);
    OfflineServer s;
    // sclang's Buffer.read: /b_allocRead with the completion ["/b_query", bufnum].
    s.packet(withBlob(msg("/b_allocRead", 5, dir.file("a.wav").c_str(), 0, -1), msg("/b_query", 5)));
    s.packet(withBlob(msg("/b_alloc", 6, 100, 1), msg("/sync", 99)));
    s.render(256);
    const size_t info = indexOf(s.replies, "/b_info"), done = indexOf(s.replies, "/done", "/b_allocRead");
    ASSERT_NE(info, SIZE_MAX);
    ASSERT_NE(done, SIZE_MAX);
    EXPECT_LT(info, done) << "scsynth runs the completion message before it answers /done";
    EXPECT_EQ(s.find("/b_info")[0].i(1), 4800);
    ASSERT_EQ(s.find("/synced").size(), 1u) << "the issue's case: /b_allocRead ... [/sync 99]";
    EXPECT_EQ(s.find("/synced")[0].i(0), 99);
    // A failed command drops its completion message.
    s.packet(withBlob(msg("/b_allocRead", 7, dir.file("missing.wav").c_str()), msg("/sync", 100)));
    s.render(256);
    EXPECT_EQ(s.find("/fail", "/b_allocRead").size(), 1u);
    EXPECT_EQ(s.find("/synced").size(), 1u);
    // A malformed one fails the command before it starts.
    s.packet(withBlob(msg("/b_alloc", 8, 100, 1), {'/', 'x', 0, 0, ',', 'i', 0, 0}));
    s.render(256);
    ASSERT_EQ(s.find("/fail", "/b_alloc").size(), 1u);
    EXPECT_NE(s.find("/fail", "/b_alloc")[0].str(1).find("malformed completion message"), std::string::npos);
}

TEST(ScsynthClients, NotifyGivesClientIdsAndMaxLoginsAsScsynth) {
    OfflineServer s;
    s.send("/notify", 1);
    ASSERT_EQ(s.find("/done", "/notify").size(), 1u);
    const auto d = s.find("/done", "/notify")[0];
    ASSERT_EQ(d.args.size(), 3u);
    EXPECT_EQ(d.i(1), 0);   // the first client id
    EXPECT_EQ(d.i(2), 32);  // maxLogins (sclang accepts at most 32)
    s.send("/notify", 1);
    const auto f = s.find("/fail", "/notify");
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].str(1), "already registered");
    EXPECT_EQ(f[0].i(2), 0);
    s.send("/notify", 0);
    s.send("/notify", 1, 5); // asks for id 5
    EXPECT_EQ(s.find("/done", "/notify").back().i(1), 5);
}

TEST(ScsynthClients, ServerChosenIdsAreNegative) {
    OfflineServer s;
    s.send("/notify", 1);
    s.send("/s_new", "player", -1, 0, 0);
    s.send("/g_new", -1, 0, 0);
    s.render(128);
    const auto go = s.find("/n_go");
    ASSERT_EQ(go.size(), 2u);
    EXPECT_LT(go[0].i(0), 0);
    EXPECT_LT(go[1].i(0), 0);
    EXPECT_NE(go[0].i(0), go[1].i(0));
}

TEST(ScsynthClients, ErrorTurnsFailRepliesOffAndOnPerClientAndPerBundle) {
    OfflineServer s;
    s.send("/error", 0);
    s.send("/bogus");
    EXPECT_TRUE(s.find("/fail").empty());
    s.send("/error", 1);
    s.send("/bogus");
    EXPECT_EQ(s.find("/fail").size(), 1u);
    s.packet(bundleAt(0.0, {msg("/error", -1), msg("/bogus"), msg("/bogus")}));
    EXPECT_EQ(s.find("/fail").size(), 1u) << "off for that bundle";
    s.send("/bogus");
    EXPECT_EQ(s.find("/fail").size(), 2u) << "and on again after it";
}

TEST(ScsynthClients, SynthDefCommandsFailOncePerPacket) {
    OfflineServer s;
    const std::vector<char> def(64, 'x');
    s.packet(bundleAt(0.0, {withBlob(msg("/d_recv"), def), withBlob(msg("/d_recv"), def), msg("/d_load", "/x/*.scsyndef")}));
    s.packet(numbered(5, 1));
    const auto f = s.find("/fail", "/d_recv");
    ASSERT_EQ(f.size(), 2u);
    EXPECT_NE(f[0].str(1).find("loads no SynthDefs"), std::string::npos);
    EXPECT_TRUE(s.find("/fail", "/d_load").empty());
}

TEST(ScsynthClients, ReplyFormatFloat32TurnsDoublesIntoFloats) {
    OfflineServer s;
    s.send("/status");
    ASSERT_EQ(s.replies.size(), 1u);
    EXPECT_TRUE(std::holds_alternative<double>(s.replies[0].args[7])); // nominal rate
    s.send("/reply_format", "float32");
    s.send("/status");
    const auto& r = s.replies.back();
    for (const auto& a : r.args) EXPECT_FALSE(std::holds_alternative<double>(a) || std::holds_alternative<int64_t>(a));
    EXPECT_FLOAT_EQ(std::get<float>(r.args[7]), 48000.0f);
    s.send("/reply_format", "full");
    s.send("/status");
    EXPECT_TRUE(std::holds_alternative<double>(s.replies.back().args[7]));
    s.send("/reply_format", "double");
    EXPECT_EQ(s.find("/fail", "/reply_format").size(), 1u);
}

TEST(ScsynthClients, ClearSchedDropsWhatIsWaitingAndFreesIt) {
    TempDir dir;
    writeWav(dir.file("a.wav"), {std::vector<float>(4800, 0.5f)}, 48000);
    OfflineServer s;
    s.send("/notify", 1);
    s.send("/b_allocRead", 1, dir.file("a.wav").c_str());
    s.at(0.5, "/s_new", "player", 10, 0, 0, "buf", 1, "loop", 1);
    s.at(0.6, "/tempo", 90.0f);
    s.at(0.7, "/g_queryTree", 0);
    s.render(1024);
    s.send("/clearSched");
    s.renderSeconds(1.0);
    EXPECT_TRUE(s.find("/n_go").empty()) << "the player never started";
    EXPECT_TRUE(s.find("/g_queryTree.reply").empty());
    EXPECT_EQ(maxAbs(s.output[0]), 0.0f);
    s.send("/status");
    EXPECT_FLOAT_EQ(static_cast<float>(s.find("/status.reply")[0].num(13)), 120.0f) << "the tempo change was dropped";
}

TEST(ScsynthClients, ANodeParameterFollowsAControlBus) {
    OfflineServer s;
    TempDir dir;
    writeWav(dir.file("dc.wav"), {std::vector<float>(48000, 0.5f)}, 48000);
    s.send("/b_allocRead", 1, dir.file("dc.wav").c_str());
    s.send("/c_set", 3, 0.2f);
    s.send("/s_new", "player", 10, 0, 0, "buf", 1, "loop", 1, "gain", 1.0f);
    s.send("/n_map", 10, "gain", 3);
    s.render(4800);
    // Output: 0.5 x 0.2 (mono source, centre pan: -3 dB).
    const float centre = std::sqrt(0.5f);
    EXPECT_NEAR(s.output[0][4000], 0.5f * 0.2f * centre, 1e-4f);
    s.send("/c_setn", 2, 2, 0.0f, 0.8f);
    s.render(4800);
    EXPECT_NEAR(s.output[0][9000], 0.5f * 0.8f * centre, 1e-4f);
    EXPECT_LT(maxStep(s.output[0], 4800, 9600), 0.01f) << "de-clicked like /n_set";
    s.send("/c_get", 3, 2);
    s.send("/c_getn", 2, 2);
    s.send("/s_get", 10, "gain");
    s.render(64);
    const auto cset = s.find("/c_set");
    ASSERT_EQ(cset.size(), 2u);
    EXPECT_EQ(cset[0].i(0), 3);
    EXPECT_FLOAT_EQ(static_cast<float>(cset[0].num(1)), 0.8f);
    const auto csetn = s.find("/c_setn");
    ASSERT_EQ(csetn.size(), 1u);
    EXPECT_EQ(csetn[0].i(0), 2);
    EXPECT_EQ(csetn[0].i(1), 2);
    EXPECT_FLOAT_EQ(static_cast<float>(csetn[0].num(3)), 0.8f);
    EXPECT_FLOAT_EQ(static_cast<float>(s.find("/n_set")[0].num(2)), 0.8f);
    s.send("/n_map", 10, "gain", -1); // unmapped: the bus no longer moves it
    s.send("/c_set", 3, 0.1f);
    s.render(4800);
    EXPECT_NEAR(s.output[0].back(), 0.5f * 0.8f * centre, 1e-4f);
    s.send("/c_set", 16384, 1.0f);
    EXPECT_EQ(s.find("/fail", "/c_set").size(), 1u);
    EXPECT_TRUE(s.find("/fail", "/n_map").empty());
}

TEST(ScsynthClients, BufferSamplesAndGenerators) {
    OfflineServer s;
    s.send("/b_alloc", 1, 64, 2);
    s.send("/b_alloc", 2, 1000, 1);
    s.send("/b_set", 1, 5, 0.25f, 6, -0.5f);
    s.send("/b_setn", 1, 10, 3, 0.1f, 0.2f, 0.3f);
    s.send("/b_get", 1, 5, 6, 11);
    s.send("/b_getn", 1, 9, 4);
    s.render(64);
    const auto get = s.find("/b_set");
    ASSERT_EQ(get.size(), 1u);
    EXPECT_EQ(get[0].i(0), 1);
    EXPECT_FLOAT_EQ(static_cast<float>(get[0].num(2)), 0.25f);
    EXPECT_FLOAT_EQ(static_cast<float>(get[0].num(4)), -0.5f);
    EXPECT_FLOAT_EQ(static_cast<float>(get[0].num(6)), 0.2f);
    const auto getn = s.find("/b_setn");
    ASSERT_EQ(getn.size(), 1u);
    EXPECT_EQ(getn[0].i(2), 4);
    EXPECT_FLOAT_EQ(static_cast<float>(getn[0].num(3)), 0.0f);
    EXPECT_FLOAT_EQ(static_cast<float>(getn[0].num(6)), 0.3f);
    EXPECT_TRUE(s.find("/done", "/b_set").empty()) << "scsynth answers /b_set with nothing";
    // sine1 1 0.5 (normalized): one cycle of the fundamental plus half the second partial.
    s.send("/b_gen", 2, "sine1", 1 | 4, 1.0f, 0.5f);
    s.send("/b_getn", 2, 0, 1000);
    s.render(64);
    ASSERT_EQ(s.find("/done", "/b_gen").size(), 1u);
    const auto w = s.find("/b_setn").back();
    double peak = 0, err = 0;
    std::vector<double> x(1000);
    for (int i = 0; i < 1000; ++i) {
        x[static_cast<size_t>(i)] = w.num(static_cast<size_t>(3 + i));
        peak = std::max(peak, std::fabs(x[static_cast<size_t>(i)]));
    }
    auto partials = [](int i) { const double t = i / 1000.0; return std::sin(2 * M_PI * t) + 0.5 * std::sin(4 * M_PI * t); };
    double rawPeak = 0;
    for (int i = 0; i < 1000; ++i) rawPeak = std::max(rawPeak, std::fabs(partials(i)));
    for (int i = 0; i < 1000; ++i) err = std::max(err, std::fabs(x[static_cast<size_t>(i)] - partials(i) / rawPeak));
    EXPECT_NEAR(peak, 1.0, 1e-6);
    EXPECT_LT(err, 1e-5) << "the partials, normalized";
    // copy: 8 frames of buffer 1 from frame 5 (samples 10, 11 = 0.1, 0.2) to frame 0 of buffer 3.
    s.send("/b_alloc", 3, 64, 2);
    s.send("/b_gen", 3, "copy", 0, 1, 5, 8);
    s.send("/b_get", 3, 0, 1, 2, 10);
    s.render(64);
    const auto c = s.find("/b_set").back();
    EXPECT_FLOAT_EQ(static_cast<float>(c.num(2)), 0.1f);  // frame 0, channel 0
    EXPECT_FLOAT_EQ(static_cast<float>(c.num(4)), 0.2f);  // frame 0, channel 1
    EXPECT_FLOAT_EQ(static_cast<float>(c.num(6)), 0.3f);  // frame 1, channel 0
    EXPECT_FLOAT_EQ(static_cast<float>(c.num(8)), 0.0f);  // frame 5: beyond what was set
    s.send("/b_gen", 2, "copy", 0, 1);
    s.render(64);
    EXPECT_EQ(s.find("/fail", "/b_gen").size(), 1u) << "2 channels into 1";
    s.send("/b_get", 1, 128);
    s.render(64);
    EXPECT_EQ(s.find("/fail", "/b_get").size(), 1u);
}
