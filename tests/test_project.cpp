// Projects (server/library/ProjectModule): a scene with decks (players in groups with EQ, a
// filter and a reverb, group faders), buffers, a loop recorded and overdubbed from the input and
// a tempo ramp is saved; a fresh server loads it; the same timetagged commands afterwards render
// the same samples on both (a null test). A partial project, one of a newer loopd and a damaged
// one are refused with the reason, and the scene already loaded plays on untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/OfflineServer.h"

using namespace loopd;
using namespace loopd::test;

namespace {
constexpr int kRate = 48000;

void renderUntil(OfflineServer& s, const char* address, const std::string& command, double maxSeconds = 10.0) {
    for (int i = 0; i < static_cast<int>(maxSeconds * kRate / 512); ++i) {
        if (!s.find(address, command).empty()) return;
        s.render(512);
    }
    FAIL() << "no " << address << " " << command << " within " << maxSeconds << " s";
}

// The commands after the load, at `t0` + their time, on either server.
void play(OfflineServer& s, double t0) {
    s.at(t0, "/n_run", 101, 1);
    s.at(t0, "/n_run", 201, 1);
    s.at(t0, "/sl/0/hit", "trigger");
    s.at(t0 + 0.3, "/start_group", 0.0f, "B"); // the cued stem
    s.at(t0 + 0.5, "/n_set", 102, "high", 0.4f);
    s.at(t0 + 0.6, "/tempo", 100.0f, 1.0f);
    s.at(t0 + 1.0, "/s_new", "player", 300, 1, 200, "buf", 1, "rate", 0.5f, "gain", 0.4f);
    s.at(t0 + 1.2, "/s_new", "player", 301, 1, 100, "buf", 2, "follow", 1, "align", 1, "downbeat", 4000, "gain", 0.5f); // on the next bar: the clock's beat
    s.at(t0 + 1.5, "/n_set", 203, "room", 0.8f);
    s.at(t0 + 2.0, "/sl/0/hit", "pause");
}

std::vector<float> slice(const std::vector<float>& x, int64_t from, int64_t n) {
    return std::vector<float>(x.begin() + from, x.begin() + from + n);
}

} // namespace

class Project : public ::testing::Test {
protected:
    void SetUp() override {
        writeWav(dir.file("tone.wav"), {sine(440.0, 0.3, kRate * 2, kRate), sine(660.0, 0.3, kRate * 2, kRate)}, kRate);
        writeWav(dir.file("low.wav"), {sine(110.0, 0.4, kRate * 3, kRate)}, kRate);
    }

    // The original scene, then /project_save; returns the sample the save was sent at.
    int64_t buildAndSave(OfflineServer& a, const std::string& project) {
        std::vector<float> in(kRate * 20);
        for (size_t i = 0; i < in.size(); ++i) in[i] = (i % 12000) < 60 ? 0.6f : static_cast<float>(0.02 * std::sin(0.01 * static_cast<double>(i)));
        a.input = {in, in};
        a.send("/b_allocRead", 1, dir.file("tone.wav").c_str());
        a.send("/b_allocRead", 2, dir.file("low.wav").c_str());
        a.send("/g_new", 100, 1, 0);
        a.send("/g_new", 200, 1, 0);
        a.send("/s_new", "player", 101, 0, 100, "buf", 1, "loop", 1, "rate", 1.01f, "gain", 0.7f);
        a.send("/n_run", 101, 0);
        a.send("/s_new", "eq3", 102, 1, 100, "low", 0.5f, "high", 1.5f);
        a.send("/s_new", "player", 201, 0, 200, "buf", 2, "loop", 1, "pan", -0.3f);
        a.send("/n_run", 201, 0);
        a.send("/s_new", "filter", 202, 1, 200, "mode", 0.0f, "cutoffHz", 1800.0f, "q", 2.0f);
        a.send("/s_new", "reverb", 203, 1, 200, "room", 0.5f, "mix", 0.3f);
        a.send("/n_set", 200, "gain", 0.8f);
        // Crowdstream's decks: a stem cued on deck B (held for /start_group), levels and EQ.
        a.send("/cue", "B", dir.file("tone.wav").c_str(), 0.25f);
        a.send("/deck_levels", 0.9f, 0.7f, 1.0f, 1.0f);
        a.send("/deck_eq", "B", "low", 40.0f);
        a.send("/loop_add", 2, 10.0f);
        a.render(kRate / 2);
        a.send("/tempo", 128.0f, 0.5f); // a ramp, over by the save
        a.send("/sl/0/hit", "record");
        a.render(kRate);
        a.send("/sl/0/hit", "record");
        a.render(kRate / 2);
        a.send("/sl/0/hit", "overdub");
        a.render(kRate / 3);
        a.send("/sl/0/hit", "overdub");
        a.render(kRate / 4);
        a.send("/sl/0/hit", "pause");
        a.render(kRate / 4);
        for (const auto& f : a.find("/fail")) ADD_FAILURE() << "the scene: /fail " << f.str(0) << ": " << f.str(1);
        const int64_t t = a.engine().sampleTime();
        a.send("/project_save", project.c_str());
        renderUntil(a, "/done", "/project_save");
        return t;
    }

    TempDir dir;
};

TEST_F(Project, AFreshServerLoadingTheProjectRendersTheSameCommandsSampleForSample) {
    const std::string project = dir.file("set1");
    OfflineServer a(cfgWithBlock(64));
    const int64_t savedAt = buildAndSave(a, project);
    for (const char* f : {"project.json", "buffers/1.wav", "buffers/2.wav", "loops.json", "loops.json.loop0.wav"})
        EXPECT_TRUE(std::filesystem::exists(project + "/" + f)) << f;
    {
        std::ifstream in(project + "/project.json");
        const auto j = nlohmann::json::parse(in);
        EXPECT_NEAR(j["clock"]["bpm"].get<double>(), 128.0, 1e-6);
        EXPECT_EQ(j["tree"].size(), 7u) << j["tree"].dump();
        EXPECT_NEAR(j["tree"][2]["params"]["high"].get<double>(), 1.5, 1e-6);
        EXPECT_TRUE(j["tree"][1]["paused"].get<bool>());
    }
    // The project moves to another place (another machine): it needs nothing outside itself.
    const std::string moved = dir.file("elsewhere");
    std::filesystem::rename(project, moved);
    std::filesystem::remove(dir.file("tone.wav"));
    std::filesystem::remove(dir.file("low.wav"));

    OfflineServer b(cfgWithBlock(64));
    b.render(kRate / 10);
    const int64_t loadedAt = b.engine().sampleTime();
    b.send("/project_load", moved.c_str());
    renderUntil(b, "/done", "/project_load");
    EXPECT_TRUE(b.find("/fail").empty()) << b.find("/fail")[0].str(0) << ": " << b.find("/fail")[0].str(1);

    // The same commands, one second after each server's save / load (the clock's beat is the same there).
    const double dA = static_cast<double>(savedAt) / kRate + 1.0, dB = static_cast<double>(loadedAt) / kRate + 1.0;
    play(a, dA);
    play(b, dB);
    const auto endA = static_cast<int64_t>((dA + 3.0) * kRate), endB = static_cast<int64_t>((dB + 3.0) * kRate);
    a.render(endA - static_cast<int64_t>(a.output[0].size()));
    b.render(endB - static_cast<int64_t>(b.output[0].size()));
    const int64_t fromA = static_cast<int64_t>(dA * kRate) - kRate / 4, fromB = static_cast<int64_t>(dB * kRate) - kRate / 4;
    const int64_t n = 3 * kRate;
    for (int c = 0; c < 2; ++c) {
        const auto x = slice(a.output[static_cast<size_t>(c)], fromA, n), y = slice(b.output[static_cast<size_t>(c)], fromB, n);
        EXPECT_GT(maxAbs(x), 0.1f) << "the scene sounds after the commands";
        EXPECT_EQ(maxAbs(x, 0, kRate / 4), 0.0f) << "the original is silent before the commands";
        EXPECT_EQ(maxAbs(y, 0, kRate / 4), 0.0f) << "the loaded one is silent before the commands";
        // Bit for bit, but for the cued stem: a tempo follower made before the tempo ramp on the
        // original and after it on the loaded server, whose read position takes its steps in
        // another order: within a few float steps of its level (measured 2.4e-7, -132 dBFS).
        size_t differing = 0;
        double worst = 0.0;
        for (size_t i = 0; i < x.size(); ++i) {
            const double d = std::fabs(x[i] - y[i]);
            differing += d > 0.0;
            worst = std::max(worst, d);
        }
        std::printf("channel %d: %zu of %zu samples differ, by at most %.3g\n", c, differing, x.size(), worst);
        EXPECT_LE(worst, 1e-6) << "channel " << c;
        const size_t beforeStem = static_cast<size_t>(0.55 * kRate);
        for (size_t i = 0; i < beforeStem; ++i) ASSERT_EQ(x[i], y[i]) << "channel " << c << ", bit for bit before the stem starts, sample " << i;
    }
}

TEST_F(Project, APartialANewerOrADamagedProjectIsRefusedAndTheSceneLoadedPlaysOn) {
    const std::string project = dir.file("set2");
    OfflineServer a(cfgWithBlock(64));
    buildAndSave(a, project);
    OfflineServer b(cfgWithBlock(64));
    b.send("/project_load", project.c_str());
    renderUntil(b, "/done", "/project_load");
    b.send("/n_run", 101, 1);
    b.render(kRate / 2);
    ASSERT_GT(maxAbs(b.output[0], b.output[0].size() - kRate / 4), 0.05f);

    auto refused = [&](const std::string& dirName, const std::string& reason) {
        const size_t before = b.find("/fail", "/project_load").size();
        b.send("/project_load", dirName.c_str());
        b.render(kRate / 4);
        const auto fails = b.find("/fail", "/project_load");
        ASSERT_EQ(fails.size(), before + 1) << dirName;
        EXPECT_NE(fails.back().str(1).find(reason), std::string::npos) << fails.back().str(1);
        // Nothing was touched: the player still plays, the loops and buffers are there.
        EXPECT_GT(maxAbs(b.output[0], b.output[0].size() - kRate / 8), 0.05f);
    };
    // Partial: a buffer's file is missing.
    const std::string partial = dir.file("partial");
    std::filesystem::copy(project, partial, std::filesystem::copy_options::recursive);
    std::filesystem::remove(partial + "/buffers/2.wav");
    refused(partial, "partial (missing buffers/2.wav)");
    // A loop's audio missing.
    const std::string noLoop = dir.file("noloop");
    std::filesystem::copy(project, noLoop, std::filesystem::copy_options::recursive);
    std::filesystem::remove(noLoop + "/loops.json.loop0.wav");
    refused(noLoop, "loops.json.loop0.wav");
    // Newer.
    const std::string newer = dir.file("newer");
    std::filesystem::copy(project, newer, std::filesystem::copy_options::recursive);
    {
        std::ifstream in(newer + "/project.json");
        auto j = nlohmann::json::parse(in);
        j["version"] = 99;
        std::ofstream(newer + "/project.json") << j.dump();
    }
    refused(newer, "newer loopd");
    // Damaged, and not a project at all.
    const std::string damaged = dir.file("damaged");
    std::filesystem::copy(project, damaged, std::filesystem::copy_options::recursive);
    std::ofstream(damaged + "/project.json") << "{\"format\": \"loopd project\", \"version\": 1, \"tree\": [";
    refused(damaged, "damaged");
    refused(dir.path.string(), "not a loopd project");
}

