// The loop bank on disk (Bank.h).
#include "server/library/Bank.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "server/io/AudioFile.h"

namespace loopd::library {

namespace fs = std::filesystem;

Bank::Bank(std::string dir) : dir_(std::move(dir)) {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (!fs::is_directory(dir_)) throw std::runtime_error("the bank " + dir_ + " is not a directory I can make");
}

bool Bank::validName(const std::string& name) {
    if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == ' ') return false;
    for (char c : name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == ' ' || c == '_' || c == '-' || c == '.')) return false;
    return true;
}

int barsOf(int64_t frames, double bpm, int beatsPerBar, double sampleRate) {
    const double bar = 60.0 / bpm * sampleRate * std::max(1, beatsPerBar);
    return std::max(1, static_cast<int>(std::lround(static_cast<double>(frames) / bar)));
}

int64_t framesOfBars(int bars, int beatsPerBar, double bpm, double sampleRate) {
    return std::llround(static_cast<double>(bars) * std::max(1, beatsPerBar) * 60.0 / bpm * sampleRate);
}

void Bank::save(BankEntry meta, const BufferData& audio) const {
    if (!validName(meta.name)) throw std::runtime_error("'" + meta.name + "' is not a bank name");
    meta.frames = audio.numFrames;
    meta.sampleRate = audio.sampleRate;
    const std::string wav = audioPath(meta.name), json = sidecarPath(meta.name);
    writeAudioFile(wav + ".tmp", audio, 0, -1, "wav", "float");
    nlohmann::json j = {{"version", 1}, {"bpm", meta.bpm}, {"bars", meta.bars}, {"beatsPerBar", meta.beatsPerBar},
                        {"key", meta.key}, {"tags", meta.tags}, {"frames", meta.frames}, {"sampleRate", meta.sampleRate}};
    {
        std::ofstream f(json + ".tmp", std::ios::trunc);
        f << j.dump(2) << "\n";
        if (!f) throw std::runtime_error("cannot write " + json);
    }
    fs::rename(wav + ".tmp", wav);
    fs::rename(json + ".tmp", json);
}

BankEntry Bank::entry(const std::string& name) const {
    if (!validName(name)) throw std::runtime_error("'" + name + "' is not a bank name");
    std::ifstream f(sidecarPath(name));
    if (!f) throw std::runtime_error("no loop '" + name + "' in the bank " + dir_);
    const nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw std::runtime_error("the sidecar of '" + name + "' is not JSON");
    BankEntry e;
    e.name = name;
    try {
        e.bpm = j.at("bpm").get<double>();
        e.bars = j.at("bars").get<int>();
        e.beatsPerBar = j.value("beatsPerBar", 4);
        e.key = j.value("key", std::string());
        e.tags = j.value("tags", std::vector<std::string>());
        e.frames = j.value("frames", int64_t{0});
        e.sampleRate = j.value("sampleRate", 0.0);
    } catch (const nlohmann::json::exception&) {
        throw std::runtime_error("the sidecar of '" + name + "' lacks bpm or bars");
    }
    if (!(e.bpm >= 20.0 && e.bpm <= 400.0) || e.bars < 1 || e.bars > 256 || e.beatsPerBar < 1 || e.beatsPerBar > 32)
        throw std::runtime_error("the sidecar of '" + name + "' is out of range (bpm 20-400, bars 1-256, beatsPerBar 1-32)");
    if (!fs::exists(audioPath(name))) throw std::runtime_error("the audio of '" + name + "' is missing");
    return e;
}

std::vector<BankEntry> Bank::list() const {
    std::vector<BankEntry> out;
    std::error_code ec;
    for (const auto& f : fs::directory_iterator(dir_, ec)) {
        if (f.path().extension() != ".json") continue;
        try {
            out.push_back(entry(f.path().stem().string()));
        } catch (const std::exception&) {
            // a stray or broken sidecar is not a loop
        }
    }
    std::sort(out.begin(), out.end(), [](const BankEntry& a, const BankEntry& b) { return a.name < b.name; });
    return out;
}

} // namespace loopd::library
