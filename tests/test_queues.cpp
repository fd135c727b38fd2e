// Lock-free structures: SPSC queue and sample ring under concurrent stress (run under TSan in
// CI), and the node map against std::map on random operations.
#include <gtest/gtest.h>

#include <cstdlib>

#include <cstdio>
#include <map>
#include <random>
#include <thread>

#include "server/engine/NodeMap.h"
#include "server/rt/CaptureRing.h"
#include "server/rt/SampleRing.h"
#include "server/rt/SpscQueue.h"

using namespace loopd;

TEST(SpscQueue, DeliversEveryItemInOrderUnderContention) {
    SpscQueue<uint64_t> q(64);
    constexpr uint64_t kCount = 2'000'000;
    std::thread producer([&] {
        for (uint64_t i = 0; i < kCount;) {
            if (q.tryPush(i)) ++i;
            else std::this_thread::yield();
        }
    });
    uint64_t expected = 0;
    uint64_t v;
    while (expected < kCount) {
        if (q.tryPop(v)) {
            ASSERT_EQ(v, expected);
            ++expected;
        }
    }
    producer.join();
    EXPECT_FALSE(q.tryPop(v));
}

TEST(SpscQueue, ReportsFullAndNeverOverwrites) {
    SpscQueue<int> q(3);
    EXPECT_TRUE(q.tryPush(1));
    EXPECT_TRUE(q.tryPush(2));
    EXPECT_TRUE(q.tryPush(3));
    EXPECT_FALSE(q.tryPush(4));
    int v;
    EXPECT_TRUE(q.tryPop(v));
    EXPECT_EQ(v, 1);
    EXPECT_TRUE(q.tryPush(5));
    for (int want : {2, 3, 5}) { ASSERT_TRUE(q.tryPop(v)); EXPECT_EQ(v, want); }
    EXPECT_FALSE(q.tryPop(v));
}

TEST(SampleRing, StreamsFramesIntactBetweenThreads) {
    SampleRing ring(1000, 2);
    constexpr int kFrames = 500'000;
    std::thread producer([&] {
        float l[64], r[64];
        const float* ch[2] = {l, r};
        int sent = 0;
        while (sent < kFrames) {
            const int n = std::min(64, kFrames - sent);
            for (int i = 0; i < n; ++i) { l[i] = static_cast<float>(sent + i); r[i] = -static_cast<float>(sent + i); }
            int off = 0;
            while (off < n) {
                off += static_cast<int>(ring.writePlanar(ch, off, static_cast<size_t>(n - off), 2));
                if (off < n) std::this_thread::yield();
            }
            sent += n;
        }
    });
    std::vector<float> buf(2 * 300);
    int got = 0;
    while (got < kFrames) {
        const size_t n = ring.read(buf.data(), 300);
        for (size_t i = 0; i < n; ++i) {
            ASSERT_EQ(buf[2 * i], static_cast<float>(got));
            ASSERT_EQ(buf[2 * i + 1], -static_cast<float>(got));
            ++got;
        }
    }
    producer.join();
}

TEST(NodeMap, MatchesStdMapUnderRandomInsertAndErase) {
    const unsigned seed = std::getenv("LOOPD_SEED") ? static_cast<unsigned>(std::atoi(std::getenv("LOOPD_SEED"))) : 7u;
    std::printf("seed %u (set LOOPD_SEED to reproduce)\n", seed);
    std::mt19937 rng(seed);
    NodeMap map(300);
    std::map<int32_t, Node*> ref;
    std::uniform_int_distribution<int32_t> key(-50, 1000);
    for (int step = 0; step < 200000; ++step) {
        const int32_t k = key(rng);
        Node* value = reinterpret_cast<Node*>(static_cast<uintptr_t>(k + 100) * 16);
        if (rng() % 2) {
            const bool inserted = map.insert(k, value);
            const bool expect = !ref.count(k) && ref.size() < 300;
            ASSERT_EQ(inserted, expect);
            if (inserted) ref[k] = value;
        } else {
            map.erase(k);
            ref.erase(k);
        }
        ASSERT_EQ(map.size(), static_cast<int>(ref.size()));
        const int32_t probe = key(rng);
        ASSERT_EQ(map.find(probe), ref.count(probe) ? ref[probe] : nullptr);
    }
}

TEST(CaptureRing, KeepsTheNewestFramesOfEveryChannelAcrossTheWrap) {
    // Three channels held, two given (the third records silence), in blocks of 100 that do not
    // divide the capacity (1024): every frame still held reads back as written.
    CaptureRing ring(3, 1000);
    ASSERT_EQ(ring.capacity(), 1024);
    std::vector<float> a(100), b(100);
    const float* in[2] = {a.data(), b.data()};
    for (int64_t at = 0; at < 5000; at += 100) {
        for (int i = 0; i < 100; ++i) { a[static_cast<size_t>(i)] = static_cast<float>(at + i); b[static_cast<size_t>(i)] = -static_cast<float>(at + i) - 0.5f; }
        ring.write(in, 2, at, 100);
    }
    EXPECT_EQ(ring.end(), 5000);
    EXPECT_EQ(ring.begin(), 5000 - 1024);
    for (int64_t t = ring.begin(); t < ring.end(); ++t) {
        ASSERT_EQ(ring.read(t, 0), static_cast<float>(t));
        ASSERT_EQ(ring.read(t, 1), -static_cast<float>(t) - 0.5f);
        ASSERT_EQ(ring.read(t, 2), 0.0f);
    }
    EXPECT_EQ(ring.read(ring.begin() - 1, 0), 0.0f); // no longer held
}

TEST(CaptureRing, SilenceOverSilenceIsNotWrittenAndReadsBackTheSame) {
    // Blocks of random lengths, silent or not (some channels absent), laps of a small ring: every
    // frame held reads back as a plain record of everything written, including the silence that
    // the ring does not store again over slots that hold silence.
    const unsigned seed = std::getenv("LOOPD_SEED") ? static_cast<unsigned>(std::atoi(std::getenv("LOOPD_SEED"))) : 20261206u;
    std::printf("seed %u (set LOOPD_SEED to reproduce)\n", seed);
    std::mt19937 rng(seed);
    CaptureRing ring(2, 1000);
    const int64_t cap = ring.capacity();
    std::vector<std::vector<float>> record(2);
    std::vector<float> a(700), b(700);
    int64_t at = 0;
    for (int block = 0; block < 3000; ++block) {
        const int n = 1 + static_cast<int>(rng() % 700);
        // Long silent stretches (more than a lap) and short ones, sound on one channel or both.
        const int kind = static_cast<int>(rng() % 10);
        const bool soundA = kind < 3, soundB = kind == 0 || kind == 3;
        for (int i = 0; i < n; ++i) {
            a[static_cast<size_t>(i)] = soundA && rng() % 4 ? static_cast<float>(at + i) : 0.0f;
            b[static_cast<size_t>(i)] = soundB && rng() % 4 ? -static_cast<float>(at + i) : 0.0f;
        }
        const bool absentB = rng() % 5 == 0;
        const float* in[2] = {a.data(), absentB ? nullptr : b.data()};
        ring.write(in, 2, at, n);
        for (int i = 0; i < n; ++i) {
            record[0].push_back(a[static_cast<size_t>(i)]);
            record[1].push_back(absentB ? 0.0f : b[static_cast<size_t>(i)]);
        }
        at += n;
        ASSERT_EQ(ring.end(), at);
        for (int64_t t = std::max<int64_t>(0, at - cap); t < at; ++t)
            for (int c = 0; c < 2; ++c)
                ASSERT_EQ(ring.read(t, c), record[static_cast<size_t>(c)][static_cast<size_t>(t)]) << "t " << t << " channel " << c << " block " << block;
    }
}
