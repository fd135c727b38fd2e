// The front end's dispatcher and modules (server/control/Controller, Module.h): a namespace added
// as a module registers its own addresses (exact and prefix routes), owns its state, and hears
// of the engine's events through the hooks — the way Crowdstream, SooperLooper and the tempo
// commands are built, and the way the next namespaces (MIDI, Link, analysis) will be.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/control/Module.h"
#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

class Probe final : public Module {
public:
    explicit Probe(Controller& c) : Module(c) {
        on("/probe/hello", &Probe::hHello);
        onPrefix("/probe/", &Probe::hAny);
        onPrefix("/probe/deep/", &Probe::hDeep);
    }
    void onBeat(const reply::Beat& b) override { beats.push_back(b.beat); }
    void onNodeCreated(Msg&, Node& n) override { created.push_back(n.id()); }
    void onNodeEnded(int32_t id) override { ended.push_back(id); }
    void onNodeDisposed(const Node& n) override { disposed.push_back(n.id()); }
    void poll() override { ++polls; }

    std::vector<std::string> heard;
    std::vector<int64_t> beats;
    std::vector<int32_t> created, ended, disposed;
    int polls = 0;

private:
    void hHello(Msg& m) {
        const int32_t x = m.args.int32("x");
        m.args.expectEnd();
        heard.push_back(std::string("hello ") + std::to_string(x));
        done(m.client, m.address, {x});
    }
    void hAny(Msg& m) { heard.push_back(std::string("any ") + m.address); }
    void hDeep(Msg& m) {
        heard.push_back(std::string("deep ") + m.address);
        throw loopd::osc::ArgError("deep addresses answer /fail");
    }
};

} // namespace

TEST(Modules, AModuleRegistersItsAddressesExactFirstThenTheLongestPrefix) {
    OfflineServer s;
    Probe& p = s.controller().addModule<Probe>();
    s.send("/probe/hello", 7);
    s.send("/probe/other/thing");
    s.send("/probe/deep/x");
    s.send("/probe/hello", "not a number");
    s.render(64);
    ASSERT_EQ(p.heard.size(), 3u);
    EXPECT_EQ(p.heard[0], "hello 7");
    EXPECT_EQ(p.heard[1], "any /probe/other/thing");
    EXPECT_EQ(p.heard[2], "deep /probe/deep/x");
    ASSERT_EQ(s.find("/done", "/probe/hello").size(), 1u);
    EXPECT_EQ(s.find("/done", "/probe/hello")[0].num(1), 7);
    // A handler's ArgError is the dispatcher's /fail, under the whole address.
    ASSERT_EQ(s.find("/fail", "/probe/deep/x").size(), 1u);
    EXPECT_EQ(s.find("/fail", "/probe/deep/x")[0].str(1), "deep addresses answer /fail");
    ASSERT_EQ(s.find("/fail", "/probe/hello").size(), 1u);
    // Other modules' addresses are untouched by the new prefix.
    s.send("/set_tempo", 130.0f);
    s.render(64);
    EXPECT_EQ(s.find("/done", "/set_tempo").size(), 1u);
    EXPECT_EQ(p.heard.size(), 3u);
}

TEST(Modules, AModuleHearsOfBeatsAndOfTheNodesClientsMakeAndFree) {
    OfflineServer s;
    Probe& p = s.controller().addModule<Probe>();
    s.send("/notify", 1);
    s.send("/s_new", "gain", 1500, 0, 0);
    s.render(48000); // one second at 120 BPM: beats 0 and 1 (and the node is running)
    s.send("/n_free", 1500);
    s.render(48000);
    EXPECT_EQ(p.created, std::vector<int32_t>{1500});
    EXPECT_EQ(p.ended, std::vector<int32_t>{1500});
    EXPECT_EQ(p.disposed, std::vector<int32_t>{1500});
    EXPECT_GE(p.beats.size(), 3u);
    EXPECT_EQ(p.beats.size(), s.find("/beat").size()) << "one hook call per /beat";
    EXPECT_GT(p.polls, 0);
}
