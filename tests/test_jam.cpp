// The interval jam's wire formats (server/net/JamState, JamAudio): the state's JSON and its
// checked parser, FLAC in memory. The HTTP exchange between servers is tested end to end
// (tests/e2e/test_jam.py).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "server/library/Generator.h"
#include "server/net/JamAudio.h"
#include "server/net/JamState.h"

using namespace loopd;
using namespace loopd::net;

TEST(JamState, RoundTripsThroughJson) {
    JamState s;
    s.bpm = 97.5;
    s.beatsPerBar = 3;
    s.bars = 2;
    s.loopFrames = jamLoopFrames(97.5, 3, 2, 48000.0);
    s.cycle = 12;
    s.turn = "bob";
    s.musicians = {"alice", "bob"};
    JamState back;
    std::string error;
    ASSERT_TRUE(parseJamState(toJson(s), back, error)) << error;
    EXPECT_EQ(back.bpm, 97.5);
    EXPECT_EQ(back.beatsPerBar, 3);
    EXPECT_EQ(back.bars, 2);
    EXPECT_EQ(back.loopFrames, 177231); // 6 beats at 97.5 BPM: 3.6923 s
    EXPECT_EQ(back.cycle, 12);
    EXPECT_EQ(back.turn, "bob");
    EXPECT_EQ(back.musicians, s.musicians);
}

TEST(JamState, MalformedStatesAreRefusedWithAReason) {
    const char* good = R"({"bpm":120,"beatsPerBar":4,"bars":1,"loopFrames":96000,"sampleRate":48000,"cycle":0,"turn":"","musicians":[]})";
    JamState s;
    std::string error;
    ASSERT_TRUE(parseJamState(good, s, error)) << error;
    const std::pair<const char*, const char*> bad[] = {
        {"{not json", "not a JSON object"},
        {"[1,2]", "not a JSON object"},
        {R"({"beatsPerBar":4,"bars":1,"loopFrames":96000,"sampleRate":48000,"cycle":0,"turn":"","musicians":[]})", "no number 'bpm'"},
        {R"({"bpm":"fast","beatsPerBar":4,"bars":1,"loopFrames":96000,"sampleRate":48000,"cycle":0,"turn":"","musicians":[]})", "no number 'bpm'"},
        {R"({"bpm":1e9,"beatsPerBar":4,"bars":1,"loopFrames":96000,"sampleRate":48000,"cycle":0,"turn":"","musicians":[]})", "bpm is out of range"},
        {R"({"bpm":120,"beatsPerBar":4,"bars":1,"loopFrames":0,"sampleRate":48000,"cycle":0,"turn":"","musicians":[]})", "loopFrames is out of range"},
        {R"({"bpm":120,"beatsPerBar":4,"bars":1,"loopFrames":96000,"sampleRate":48000,"cycle":0,"musicians":[]})", "no string 'turn'"},
        {R"({"bpm":120,"beatsPerBar":4,"bars":1,"loopFrames":96000,"sampleRate":48000,"cycle":0,"turn":"","musicians":[3]})", "not all names"},
    };
    for (const auto& [text, why] : bad) {
        error.clear();
        EXPECT_FALSE(parseJamState(text, s, error)) << text;
        EXPECT_NE(error.find(why), std::string::npos) << text << ": " << error;
    }
}

TEST(JamState, NamesAreShortAndPlain) {
    EXPECT_TRUE(validJamName("alice"));
    EXPECT_TRUE(validJamName("bass-2.left_hand"));
    EXPECT_FALSE(validJamName(""));
    EXPECT_FALSE(validJamName("no spaces"));
    EXPECT_FALSE(validJamName("a/b"));
    EXPECT_FALSE(validJamName(std::string(33, 'x')));
}

TEST(JamAudio, FlacKeepsEverySampleTo24Bits) {
    auto d = BufferData::zeros(96000, 2, 48000.0);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-0.9f, 0.9f);
    for (int c = 0; c < 2; ++c)
        for (int64_t i = 0; i < d->numFrames; ++i) d->channel(c)[i] = u(rng);
    d->channel(0)[1234] = 1.5f; // clipped by the format
    const std::string flac = encodeFlac(*d);
    ASSERT_EQ(flac.substr(0, 4), "fLaC");
    EXPECT_LT(flac.size(), static_cast<size_t>(96000 * 2 * 4)); // smaller than the floats, even for noise
    std::string error;
    auto back = decodeAudio(flac, error);
    ASSERT_TRUE(back) << error;
    EXPECT_EQ(back->numFrames, 96000);
    EXPECT_EQ(back->numChannels, 2);
    EXPECT_EQ(back->sampleRate, 48000.0);
    double worst = 0.0;
    for (int c = 0; c < 2; ++c)
        for (int64_t i = 0; i < d->numFrames; ++i)
            if (!(c == 0 && i == 1234)) worst = std::max(worst, static_cast<double>(std::fabs(back->channel(c)[i] - d->channel(c)[i])));
    EXPECT_LT(worst, 1.0 / (1 << 22)); // 24-bit steps
    EXPECT_NEAR(back->channel(0)[1234], 1.0f, 1e-6f);
}

TEST(JamAudio, WhatIsNotAudioSaysSo) {
    std::string error;
    EXPECT_FALSE(decodeAudio("this is not audio at all, not even close", error));
    EXPECT_NE(error.find("not audio"), std::string::npos) << error;
    error.clear();
    EXPECT_FALSE(decodeAudio("", error));
    EXPECT_FALSE(error.empty());
    // A FLAC cut short: refused, not read as shorter audio.
    auto d = BufferData::zeros(48000, 1, 48000.0);
    for (int64_t i = 0; i < d->numFrames; ++i) d->channel(0)[i] = static_cast<float>(0.5 * std::sin(0.01 * static_cast<double>(i)));
    const std::string flac = encodeFlac(*d);
    error.clear();
    auto cut = decodeAudio(flac.substr(0, flac.size() / 2), error);
    EXPECT_TRUE(!cut || cut->numFrames == 48000) << "a cut file is refused or, when its header says fewer frames, read whole";
    if (!cut) {
        EXPECT_FALSE(error.empty());
    }
}

TEST(Base64, DecodesWhatTheGeneratorSends) {
    std::string out;
    ASSERT_TRUE(library::base64Decode("UklGRg==", out));
    EXPECT_EQ(out, "RIFF");
    ASSERT_TRUE(library::base64Decode("aGVs\nbG8s IHdv\r\ncmxk", out)); // line breaks and spaces
    EXPECT_EQ(out, "hello, world");
    ASSERT_TRUE(library::base64Decode("-_8=", out)); // the URL-safe alphabet
    EXPECT_EQ(out, std::string("\xfb\xff"));
    EXPECT_FALSE(library::base64Decode("not*base64", out));
    EXPECT_FALSE(library::base64Decode("QQ==QQ", out)); // data after the padding
}
