// The hand-back lane (server/engine/Engine: Released): everything the audio thread is done with
// reaches the control thread by one lane, in order, even when the control thread stood still
// for a while; and whatever is still in any queue when the engine goes is freed then.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "server/engine/BufferData.h"
#include "server/engine/Engine.h"

using namespace loopd;

namespace {

// A node that counts its instances.
struct Counted final : Node {
    static inline std::atomic<int> live{0};
    explicit Counted(int32_t id) noexcept : Node(id, Kind::Effect) { ++live; }
    ~Counted() override { --live; }
    void render(ProcessContext& ctx, Bus&, int, int n) noexcept override {
        env_.skip(n);
        soloGain_.skip(n);
        finishSegment(ctx);
    }
};

EngineConfig config() {
    EngineConfig c;
    c.realtimeClock = false;
    c.maxNodes = 2048;
    c.commandQueueSize = 8192;
    return c;
}

Command command(CommandBody body, uint64_t timetag = 0) {
    Command c;
    c.timetag = timetag;
    c.address = "/test";
    c.body = std::move(body);
    return c;
}

void run(Engine& e, int blocks) {
    std::vector<float> in(static_cast<size_t>(2 * e.config().blockSize)), out(in.size());
    const float* ip[2] = {in.data(), in.data() + e.config().blockSize};
    float* op[2] = {out.data(), out.data() + e.config().blockSize};
    for (int b = 0; b < blocks; ++b) {
        e.process(ip, op);
        for (Reply r; e.popReply(r);) {} // (a full reply queue would hold the commands back)
    }
}

// 2,000 nodes made and all freed, three times over, while the control thread takes nothing back
// from the lane (it reads the replies):
// 6,000 releases for a lane of 3,072 (the rest wait on the audio side).
void churn(Engine& e) {
    for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < 2000; ++i) ASSERT_TRUE(e.pushCommand(command(cmd::NewNode{new Counted(100 + i), AddAction::Tail, 0})));
        run(e, 4);
        ASSERT_TRUE(e.pushCommand(command(cmd::FreeAll{0, false})));
        run(e, 40); // the de-click fades end
    }
}

} // namespace

TEST(HandBackLane, NothingIsLostWhileTheControlThreadStandsStillAndAllArrivesInOrder) {
    Counted::live = 0;
    {
        Engine e(config());
        churn(e);
        EXPECT_EQ(Counted::live.load(), 6000) << "nothing freed on the audio thread";
        EXPECT_EQ(e.stats().numNodes, 1) << "the root only";
        // The control thread comes back: everything arrives, block by block as room frees up.
        int nodes = 0;
        std::vector<int32_t> order;
        for (int guard = 0; guard < 100 && nodes < 6000; ++guard) {
            for (Released r; e.popReleased(r);) {
                ASSERT_EQ(r.what, Released::What::Node);
                auto* n = static_cast<Node*>(r.ptr);
                order.push_back(n->id());
                delete n;
                ++nodes;
            }
            run(e, 1);
        }
        EXPECT_EQ(nodes, 6000);
        EXPECT_EQ(Counted::live.load(), 0);
        // In order: every node of a round before any of the next (what waited on the audio side
        // is not overtaken by what came later).
        ASSERT_EQ(order.size(), 6000u);
        for (size_t round = 0; round < 3; ++round) {
            std::vector<int32_t> ids(order.begin() + static_cast<std::ptrdiff_t>(2000 * round), order.begin() + static_cast<std::ptrdiff_t>(2000 * (round + 1)));
            std::sort(ids.begin(), ids.end());
            for (size_t k = 0; k < ids.size(); ++k) ASSERT_EQ(ids[k], 100 + static_cast<int32_t>(k)) << "round " << round;
        }
        EXPECT_EQ(e.stats().droppedReplies, 0u);
    }
}

TEST(HandBackLane, WhatIsLeftInAnyQueueIsFreedWhenTheEngineGoes) {
    Counted::live = 0;
    {
        Engine e(config());
        churn(e);                      // releases in the lane and waiting behind it
        run(e, 1);
        // Commands that never ran: queued, and timetagged far ahead (the scheduler's heap).
        for (int i = 0; i < 10; ++i) ASSERT_TRUE(e.pushCommand(command(cmd::NewNode{new Counted(5000 + i), AddAction::Tail, 0}, 1000ull << 32)));
        run(e, 1);
        for (int i = 0; i < 10; ++i) ASSERT_TRUE(e.pushCommand(command(cmd::NewNode{new Counted(6000 + i), AddAction::Tail, 0})));
        // A buffer on its way: a swap that never ran (ASan builds see it freed).
        ASSERT_TRUE(e.pushCommand(command(cmd::SwapBuffer{1, BufferData::zeros(100, 1, 48000.0).release(), "/b_alloc"})));
        EXPECT_EQ(Counted::live.load(), 6020);
    }
    EXPECT_EQ(Counted::live.load(), 0) << "every node freed with the engine";
}
