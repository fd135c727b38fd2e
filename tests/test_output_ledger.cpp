// The output ledger (server/nodes/player/OutputLedger.h): where a stretched player's output
// stands in its source, counted from what was fed at which speed.
#include <gtest/gtest.h>

#include <vector>

#include "server/nodes/player/OutputLedger.h"

using namespace loopd;

TEST(OutputLedger, OutputComesOutAtTheSpeedItWasFedAt) {
    OutputLedger l;
    l.queue(100.0, 1.5); // 100 output frames made of 150 source frames
    l.queue(50.0, 0.5);  // 50 output frames made of 25
    l.consume(120.0, 9.0);
    EXPECT_DOUBLE_EQ(l.source(), 100.0 * 1.5 + 20.0 * 0.5);
    l.consume(30.0, 9.0);
    EXPECT_DOUBLE_EQ(l.source(), 175.0);
    EXPECT_EQ(l.queued(), 0);
    // More out than was queued (the engines round): the rest counts at the speed given.
    l.consume(4.0, 2.0);
    EXPECT_DOUBLE_EQ(l.source(), 183.0);
}

TEST(OutputLedger, PaddingCarriesNoSourceAndSameSpeedsMerge) {
    OutputLedger l;
    l.queue(10.0, 1.0);
    l.queue(10.0, 1.0); // merged with the one before
    l.queue(0.0, 3.0);  // nothing: ignored
    l.queue(8.0, 0.0);  // padding after a one-shot's end
    std::vector<std::pair<double, double>> seen;
    l.forEachQueued([&](double frames, double speed) { seen.emplace_back(frames, speed); });
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[0], std::make_pair(20.0, 1.0));
    EXPECT_EQ(seen[1], std::make_pair(8.0, 0.0));
    l.consume(28.0, 1.0);
    EXPECT_DOUBLE_EQ(l.source(), 20.0);
}

TEST(OutputLedger, AFullLedgerExtendsItsNewestSegmentAndLosesNothing) {
    OutputLedger l;
    double source = 0.0, out = 0.0;
    for (int k = 0; k < OutputLedger::kMax + 100; ++k) {
        const double speed = k % 2 ? 1.25 : 0.75;
        l.queue(4.0, speed);
        out += 4.0;
        // What the segments past the limit carry counts at the newest speed there was room for.
        source += 4.0 * (k < OutputLedger::kMax ? speed : 1.25);
    }
    EXPECT_EQ(l.queued(), OutputLedger::kMax);
    l.consume(out, 1.0);
    EXPECT_NEAR(l.source(), source, 1e-9);
    EXPECT_EQ(l.queued(), 0);
}

TEST(OutputLedger, AResetOrASetSourceStartsOver) {
    OutputLedger l;
    l.queue(10.0, 2.0);
    l.consume(5.0, 2.0);
    l.reset();
    EXPECT_EQ(l.queued(), 0);
    EXPECT_DOUBLE_EQ(l.source(), 0.0);
    l.setSource(1234.5); // a varispeed took over and moved on
    l.queue(10.0, 0.5);
    l.consume(10.0, 0.5);
    EXPECT_DOUBLE_EQ(l.source(), 1239.5);
}
