#pragma once
// The loop bank (SPEC 4.10; jerry4loops' grid of saved loops by BPM): a directory of loops, each
// NAME.wav (32-bit float, the server's rate) beside NAME.json (its sidecar: bpm, bars,
// beatsPerBar, key, tags, frames, sampleRate, version). Names are file-safe: 1 to 64 letters,
// digits, ' ', '_', '-', '.', not starting with '.': no path leaves the directory.
//
// Threads: the worker (file I/O); validName anywhere.
#include <string>
#include <vector>

#include "server/engine/BufferData.h"

namespace loopd::library {

struct BankEntry {
    std::string name;
    double bpm = 0.0;
    int bars = 1;
    int beatsPerBar = 4;
    std::string key;                 // "" unknown
    std::vector<std::string> tags;
    int64_t frames = 0;
    double sampleRate = 0.0;
};

class Bank {
public:
    explicit Bank(std::string dir); // creates the directory when missing (throws when it cannot)
    const std::string& dir() const { return dir_; }
    static bool validName(const std::string& name);
    // Writes the audio and the sidecar (each to a temporary file renamed over the old one: a crash
    // never leaves half a loop); `meta.frames`/`sampleRate` come from `audio`.
    void save(BankEntry meta, const BufferData& audio) const;
    // Every loop with a readable sidecar and its audio, by name.
    std::vector<BankEntry> list() const;
    // One loop's sidecar (throws std::runtime_error naming what is wrong).
    BankEntry entry(const std::string& name) const;
    std::string audioPath(const std::string& name) const { return dir_ + "/" + name + ".wav"; }
    std::string sidecarPath(const std::string& name) const { return dir_ + "/" + name + ".json"; }

private:
    std::string dir_;
};

// Bars of `frames` at `bpm` (at least 1).
int barsOf(int64_t frames, double bpm, int beatsPerBar, double sampleRate);
// Frames of `bars` bars at `bpm`.
int64_t framesOfBars(int bars, int beatsPerBar, double bpm, double sampleRate);

} // namespace loopd::library
