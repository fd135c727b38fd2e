// The session log (server/io/SessionLog) and the engine's side of a replay (Engine::SessionMark,
// setReplayBlock): what is written reads back, a log cut off by a crash reads up to the cut, a
// log of a newer version is refused, and an engine given the live marks takes the same commands
// on the same samples however early they were queued.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "server/io/SessionLog.h"
#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {

loopd::osc::Endpoint udp(uint16_t port) {
    loopd::osc::Endpoint e;
    e.kind = loopd::osc::Endpoint::Kind::Udp;
    auto* a = reinterpret_cast<sockaddr_in*>(&e.addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    e.addrLen = sizeof(sockaddr_in);
    return e;
}

SessionHeader header() {
    SessionHeader h;
    h.argv = {"loopd", "--bpm", "128", "--loops", "2"};
    h.cwd = "/somewhere";
    h.sampleRate = 44100.0;
    h.blockSize = 32;
    h.inputs = 2;
    h.outputs = 4;
    h.roundTripLatency = 123;
    h.driver = "jack";
    return h;
}

} // namespace

TEST(SessionLog, WhatIsWrittenReadsBack) {
    TempDir dir;
    const std::string d = dir.file("s");
    const std::vector<char> p1 = msg("/s_new", "player", 1000), p2 = msg("/n_free", 1000);
    {
        SessionLog log(d, header());
        log.packet(256, 0x1234567890ull, 12.5, udp(5000), p1.data(), p1.size());
        log.mark(SessionMarkRecord{512, 3, 1, 0xabcdef, 99.25});
        log.completion(768, 77, 13.0, 42);
        log.tcpClosed(1024, 9);
        log.packet(1024, 88, 14.0, udp(5001), p2.data(), p2.size());
        log.marksLost(2000, 2);
        log.close(4096);
    }
    const SessionRecording r = SessionRecording::read(d);
    EXPECT_EQ(r.header.argv, header().argv);
    EXPECT_EQ(r.header.cwd, "/somewhere");
    EXPECT_EQ(r.header.sampleRate, 44100.0);
    EXPECT_EQ(r.header.blockSize, 32);
    EXPECT_EQ(r.header.inputs, 2);
    EXPECT_EQ(r.header.outputs, 4);
    EXPECT_EQ(r.header.roundTripLatency, 123);
    ASSERT_EQ(r.actions.size(), 4u);
    EXPECT_EQ(r.actions[0].kind, SessionAction::Kind::Packet);
    EXPECT_EQ(r.actions[0].sample, 256);
    EXPECT_EQ(r.actions[0].ntp, 0x1234567890ull);
    EXPECT_EQ(r.actions[0].steady, 12.5);
    EXPECT_EQ(r.actions[0].bytes, p1);
    EXPECT_TRUE(r.actions[0].from == udp(5000));
    EXPECT_FALSE(r.actions[0].from == udp(5001));
    EXPECT_EQ(r.actions[1].kind, SessionAction::Kind::Completion);
    EXPECT_EQ(r.actions[1].completion, 42u);
    EXPECT_EQ(r.actions[2].kind, SessionAction::Kind::TcpClosed);
    EXPECT_EQ(r.actions[2].tcpId, 9u);
    EXPECT_EQ(r.actions[3].bytes, p2);
    ASSERT_EQ(r.marks.size(), 1u);
    EXPECT_EQ(r.marks[0].sample, 512);
    EXPECT_EQ(r.marks[0].control, 3u);
    EXPECT_EQ(r.marks[0].worker, 1u);
    EXPECT_EQ(r.marks[0].hash, 0xabcdefu);
    EXPECT_EQ(r.marks[0].blockNtp, 99.25);
    EXPECT_EQ(r.marksLost, 2u);
    EXPECT_TRUE(r.closed);
    EXPECT_EQ(r.endSample, 4096);
    EXPECT_TRUE(r.cut.empty()) << r.cut;
}

TEST(SessionLog, ALogCutOffByACrashReadsUpToItsLastWholeRecord) {
    TempDir dir;
    const std::string d = dir.file("s");
    const std::vector<char> p = msg("/n_set", 1000, "rate", 0.5f);
    {
        SessionLog log(d, header());
        for (int i = 0; i < 10; ++i) log.packet(64 * i, 0, 0.0, udp(5000), p.data(), p.size());
        log.flush(); // no closing record: the server died
    }
    SessionRecording whole = SessionRecording::read(d);
    EXPECT_FALSE(whole.closed);
    EXPECT_EQ(whole.actions.size(), 10u);
    EXPECT_NE(whole.cut.find("without its closing record"), std::string::npos) << whole.cut;
    // The last record half written.
    const auto size = std::filesystem::file_size(d + "/session.log");
    std::filesystem::resize_file(d + "/session.log", size - 7);
    SessionRecording cut = SessionRecording::read(d);
    EXPECT_EQ(cut.actions.size(), 9u);
    EXPECT_EQ(cut.actions.back().sample, 64 * 8);
    EXPECT_NE(cut.cut.find("cut off"), std::string::npos) << cut.cut;
}

TEST(SessionLog, ANewerLogOrSomethingElseIsRefusedWithTheReason) {
    TempDir dir;
    const std::string d = dir.file("s");
    { SessionLog log(d, header()); log.close(0); }
    {
        std::fstream f(d + "/session.log", std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(8);
        const uint32_t v = SessionLog::kVersion + 1;
        f.write(reinterpret_cast<const char*>(&v), 4);
    }
    try {
        SessionRecording::read(d);
        FAIL() << "a newer log was read";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("newer loopd"), std::string::npos) << e.what();
    }
    { std::ofstream f(d + "/session.log", std::ios::binary); f << "RIFF....WAVEfmt something else"; }
    try {
        SessionRecording::read(d);
        FAIL() << "a WAV was read as a session log";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("not a loopd session log"), std::string::npos) << e.what();
    }
    EXPECT_THROW(SessionRecording::read(dir.file("nothing")), std::runtime_error);
}

TEST(SessionLog, AnEngineGivenTheLiveMarksTakesTheSameCommandsOnTheSameSamples) {
    // Live: commands arrive between blocks at odd moments, a file load finishes on the worker.
    TempDir dir;
    writeWav(dir.file("dc.wav"), {std::vector<float>(48000, 0.25f)}, 48000);
    OfflineServer live;
    live.engine().startSessionLog(nullptr);
    live.render(0);
    const int64_t start = live.engine().sampleTime();
    const int B = live.config().blockSize;
    std::vector<std::pair<int, std::vector<char>>> script = {
        {3, msg("/b_allocRead", 1, dir.file("dc.wav").c_str())},
        {5, msg("/s_new", "player", 1000, 0, 0, "buf", 1, "loop", 1)},
        {9, msg("/n_set", 1000, "gain", 0.5f)},
        {17, msg("/n_set", 1000, "rate", 0.5f)},
        {23, msg("/n_free", 1000)},
        {24, msg("/s_new", "player", 1001, 0, 0, "buf", 1, "gain", 0.3f)},
    };
    for (int block = 0; block < 40; ++block) {
        for (const auto& [at, p] : script)
            if (at == block) live.packet(p);
        live.render(B);
    }
    std::vector<Engine::SessionMark> marks;
    for (Engine::SessionMark m; live.engine().popSessionMark(m);) marks.push_back(m);
    ASSERT_GE(marks.size(), 5u);

    // Replay: every packet at once, before the first block; the marks decide when each lands.
    OfflineServer replay;
    size_t next = 0;
    uint64_t control = 0, worker = 0;
    while (next < marks.size() && marks[next].sample < start) { control = marks[next].control; worker = marks[next].worker; ++next; }
    replay.engine().setReplayBlock(control, worker, 0.0); // what the server made itself at the start
    replay.render(0);
    ASSERT_EQ(replay.engine().sampleTime(), start);
    for (const auto& [at, p] : script) replay.packet(p);
    for (int block = 0; block < 40; ++block) {
        const int64_t pos = start + static_cast<int64_t>(block) * B;
        const Engine::SessionMark* due = nullptr;
        if (next < marks.size() && marks[next].sample == pos) { due = &marks[next++]; control = due->control; worker = due->worker; }
        replay.engine().setReplayBlock(control, worker, 0.0);
        replay.render(B);
        if (due) {
            const Engine::SessionMark t = replay.engine().sessionTotals();
            EXPECT_EQ(t.control, due->control) << "block at " << pos;
            EXPECT_EQ(t.worker, due->worker) << "block at " << pos;
            EXPECT_EQ(t.hash, due->hash) << "block at " << pos;
        }
    }
    EXPECT_EQ(next, marks.size());
    ASSERT_EQ(live.output[0].size(), replay.output[0].size());
    EXPECT_EQ(live.output[0], replay.output[0]) << "the replay is the live render, sample for sample";
    EXPECT_GT(maxAbs(live.output[0], 0), 0.1f) << "the players sounded";

    // Without the marks the same packets land on other samples: the test can fail.
    OfflineServer eager;
    eager.render(0);
    for (const auto& [at, p] : script) eager.packet(p);
    eager.render(40 * B);
    EXPECT_NE(live.output[0], eager.output[0]);
}
