// `loopd sections`: Crowdstream's struct_loader.py as a loopd subcommand (docs/SECTIONS.md).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "server/app/Options.h"
#include "server/io/AudioFile.h"
#include "server/library/Sections.h"

namespace loopd {

namespace {

namespace fs = std::filesystem;
using namespace loopd::sections;

// One CSV row: the original's 14 columns in its order, then `status` ("ok", or "skipped: why").
struct Row {
    std::string path, bpm, key, targetBpm, speed, ini, begin, end, beginAdj, endAdj, durationOrig, durationSectioned,
        partFileOrig, partFile, status;
    bool exported = false;
};

std::string csvCell(const std::string& s) {
    if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) {
        if (c == '"') q += '"';
        q += c;
    }
    return q + "\"";
}

void writeCsv(const fs::path& file, const std::vector<Row>& rows) {
    if (file.has_parent_path()) fs::create_directories(file.parent_path());
    std::ofstream out(file, std::ios::binary);
    if (!out) throw std::runtime_error("cannot write " + file.string());
    out << "path,bpm,key,target_bpm,speed,ini_cue,begin_cue,end_cue,begin_cue_adj,end_cue_adj,duration_orig,"
           "duration_sectioned,part_file_orig,part_file,status\r\n";
    for (const Row& r : rows) {
        const std::string cells[] = {r.path, r.bpm, r.key, r.targetBpm, r.speed, r.ini, r.begin, r.end, r.beginAdj, r.endAdj,
                                     r.durationOrig, r.durationSectioned, r.partFileOrig, r.partFile, r.status};
        bool firstCell = true;
        for (const std::string& c : cells) {
            if (!firstCell) out << ',';
            out << csvCell(c);
            firstCell = false;
        }
        out << "\r\n";
    }
    if (!out.flush()) throw std::runtime_error("write failed for " + file.string());
}

// Progress on stderr: a bar redrawn in place on a terminal, a line per track otherwise.
class Progress {
public:
    Progress(size_t tracks, bool tty) : fraction_(tracks), tty_(tty) {
        for (auto& f : fraction_) f.store(0.0);
    }
    void update(size_t track, double f) {
        fraction_[track].store(f, std::memory_order_relaxed);
        if (tty_) draw();
    }
    void finished(size_t track, const std::string& line) {
        fraction_[track].store(1.0, std::memory_order_relaxed);
        ++done_;
        std::lock_guard<std::mutex> lock(mutex_);
        if (tty_) std::fprintf(stderr, "\r\033[K");
        std::fprintf(stderr, "[%zu/%zu] %s\n", done_.load(), fraction_.size(), line.c_str());
        if (tty_) drawLocked();
    }
    void end() {
        if (!tty_) return;
        std::lock_guard<std::mutex> lock(mutex_);
        std::fprintf(stderr, "\r\033[K");
        std::fflush(stderr);
    }

private:
    void draw() {
        std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
        if (!lock.owns_lock()) return;
        const auto now = std::chrono::steady_clock::now();
        if (now - lastDraw_ < std::chrono::milliseconds(100)) return;
        lastDraw_ = now;
        drawLocked();
    }
    void drawLocked() {
        double sum = 0.0;
        for (const auto& f : fraction_) sum += f.load(std::memory_order_relaxed);
        const double all = fraction_.empty() ? 1.0 : sum / static_cast<double>(fraction_.size());
        constexpr int kWidth = 40;
        const int filled = static_cast<int>(all * kWidth);
        std::string bar(static_cast<size_t>(filled), '#');
        bar.append(static_cast<size_t>(kWidth - filled), '.');
        std::fprintf(stderr, "\r[%s] %3d%%  %zu/%zu tracks", bar.c_str(), static_cast<int>(all * 100.0), done_.load(), fraction_.size());
        std::fflush(stderr);
    }
    std::vector<std::atomic<double>> fraction_;
    std::atomic<size_t> done_{0};
    bool tty_;
    std::mutex mutex_;
    std::chrono::steady_clock::time_point lastDraw_{};
};

struct Settings {
    std::optional<double> targetBpm;
    fs::path partsDir;
    std::string audioDir;
    stretch::Method method = stretch::Method::Rb3;
};

Row skippedRow(const Track& t, const std::string& why) {
    Row r;
    r.path = t.path.empty() ? t.jsonFile : t.path;
    r.bpm = t.bpm > 0.0 ? pyFloat(t.bpm) : "";
    r.key = t.key;
    r.status = "skipped: " + why;
    return r;
}

// Crops, stretches and writes one track's section; the row says what happened.
Row exportTrack(const Track& t, const Cues& cues, const Settings& s, const std::function<void(double)>& progress) {
    const double target = s.targetBpm ? *s.targetBpm : t.bpm;
    const double speed = target / t.bpm;
    const std::string src = audioFileFor(t, s.audioDir);
    std::error_code ec;
    if (!fs::is_regular_file(src, ec)) return skippedRow(t, "audio file not found: " + src);
    const std::string stem = fs::path(src).stem().string();
    const fs::path part = s.partsDir / (stem + "_sectioned.wav");
    const fs::path partOrig = s.partsDir / "orig" / (stem + "_sectioned.wav");
    Row r;
    r.path = t.path;
    r.bpm = pyFloat(t.bpm);
    r.key = t.key;
    r.targetBpm = pyFloat(target);
    r.speed = pyFloat(speed);
    r.ini = pyFloat(cues.ini);
    r.begin = pyFloat(cues.begin);
    r.end = pyFloat(cues.end);
    r.beginAdj = pyFloat((cues.begin - cues.ini) / speed);
    r.endAdj = pyFloat((cues.end - cues.ini) / speed);
    r.durationOrig = minutesSeconds(cues.end - cues.ini);
    r.partFileOrig = partOrig.string();
    r.partFile = part.string();
    try {
        const Rendered audio = renderSection(src, cues, speed, s.method, 0.0, progress);
        // WAV in the file's own sample format where WAV has it (24-bit for compressed sources).
        const std::string format = audio.sourceSampleFormat.empty() ? "int24" : audio.sourceSampleFormat;
        auto write = [&](const fs::path& file, const std::vector<std::vector<float>>& planar) {
            fs::create_directories(file.parent_path());
            auto data = BufferData::zeros(static_cast<int64_t>(planar[0].size()), static_cast<int>(planar.size()), audio.sampleRate);
            for (size_t c = 0; c < planar.size(); ++c) std::copy(planar[c].begin(), planar[c].end(), data->channel(static_cast<int>(c)));
            const fs::path tmp = file.string() + ".part";
            writeAudioFile(tmp.string(), *data, 0, data->numFrames, "wav", format);
            fs::rename(tmp, file);
            return static_cast<double>(data->numFrames) / audio.sampleRate;
        };
        r.durationSectioned = minutesSeconds(write(part, audio.stretched));
        write(partOrig, audio.cropped);
        r.status = "ok";
        r.exported = true;
    } catch (const std::exception& e) {
        return skippedRow(t, e.what());
    }
    return r;
}

} // namespace

int runSections(int argc, char** argv) {
    CLI::App app{"loopd sections: Crowdstream's section exporter. Selects tracks by tempo and key from structure JSON "
                 "(and a Rekordbox XML), crops each from the end of its intro to the end of the chosen section, and "
                 "writes it stretched to the target tempo (pitch kept) with a CSV of the cue points."};
    app.name("loopd sections");
    std::string structDir = "stems/dj/struct";
    std::string output, csvOut, rekordboxXml, key;
    std::string partsDir = "parts_temp", audioDir = "stems/dj", method = "rb3";
    std::optional<double> bpm, targetBpm, bpmMin, bpmMax;
    double delta = 2.0;
    int nSections = 6, jobs = 1;
    app.add_option("struct_dir", structDir, "directory of track structure JSON files")->capture_default_str();
    app.add_option("-o,--output", output, "write the loaded JSON documents as one mapping (file stem → document) to this file");
    app.add_option("--bpm", bpm, "centre tempo of the search (with --delta); also the target tempo")->check(CLI::Range(1.0, 999.0));
    app.add_option("--target-bpm", targetBpm, "tempo the sections are stretched to (default: --bpm; without either, each track's own)")
        ->check(CLI::Range(1.0, 999.0));
    app.add_option("--delta", delta, "BPM ± range around --bpm")->capture_default_str()->check(CLI::Range(0.0, 999.0));
    app.add_option("--bpm-min", bpmMin, "lowest BPM (inclusive); with --bpm-max, replaces --bpm ± --delta");
    app.add_option("--bpm-max", bpmMax, "highest BPM (inclusive)");
    app.add_option("--key", key, "keys to keep, comma-separated, in any spelling: Gm, G minor, 6A (Camelot), 3m (Open Key)");
    app.add_option("--csv-out", csvOut, "export: write the sections' WAVs and this CSV (without it, only the selection is printed)");
    app.add_option("--n-sections", nSections, "the section (1-indexed, counted from the intro's end) whose end ends the export")
        ->capture_default_str()->check(CLI::Range(1, 1000));
    app.add_option("--parts-dir", partsDir, "where the section WAVs go (the unstretched cuts in its orig/)")->capture_default_str();
    app.add_option("--rekordbox-xml", rekordboxXml, "Rekordbox collection XML: its AverageBpm and Tonality override the JSON's (in memory)")
        ->check(CLI::ExistingFile);
    app.add_option("--audio-dir", audioDir, "directory of the audio files, matched by file name (else the JSON's path)")->capture_default_str();
    app.add_option("--stretch-method", method, "rb3 (Rubber Band R3, offline: best), rb2 (R2, faster), wsola (SoundTouch)")
        ->capture_default_str()->check(CLI::IsMember({"rb3", "rb2", "wsola"}));
    app.add_option("-j,--jobs", jobs, "tracks exported in parallel")->capture_default_str()->check(CLI::Range(1, 256));
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }

    std::vector<Track> tracks;
    try {
        tracks = readStructDir(structDir);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loopd sections: %s\n", e.what());
        return 2;
    }
    if (!rekordboxXml.empty()) {
        try {
            const RekordboxReport rep = applyRekordbox(tracks, readRekordbox(rekordboxXml));
            std::fprintf(stderr, "loopd sections: Rekordbox: %d BPMs and %d keys taken from %s\n", rep.bpmOverrides, rep.keysSet, rekordboxXml.c_str());
            for (const std::string& n : rep.unmatched) std::fprintf(stderr, "loopd sections: Rekordbox track matches no structure JSON: %s\n", n.c_str());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "loopd sections: %s\n", e.what());
            return 2;
        }
    }
    if (!output.empty()) {
        nlohmann::json all = nlohmann::json::object();
        for (const Track& t : tracks)
            if (t.document.is_object()) all[t.name] = t.document;
        std::ofstream out(output, std::ios::binary);
        out << all.dump(2) << "\n";
        if (!out.flush()) {
            std::fprintf(stderr, "loopd sections: cannot write %s\n", output.c_str());
            return 2;
        }
    }

    Filter filter;
    filter.bpm = bpm;
    filter.delta = delta;
    filter.bpmMin = bpmMin;
    filter.bpmMax = bpmMax;
    for (size_t at = 0; at <= key.size();) {
        const size_t comma = std::min(key.find(',', at), key.size());
        std::string k = key.substr(at, comma - at);
        k.erase(0, k.find_first_not_of(" \t"));
        k.erase(k.find_last_not_of(" \t") + 1);
        if (!k.empty()) filter.keys.push_back(k);
        at = comma + 1;
    }

    // Selection, as the original: in range and key, sorted by path, with cues. Unusable tracks
    // are reported (stderr, and CSV rows marked skipped) instead of silently dropped.
    std::vector<Row> skipped;
    struct Job { const Track* track; Cues cues; };
    std::vector<Job> jobsToDo;
    std::vector<const Track*> chosen;
    for (const Track& t : tracks) {
        // Unreadable JSON and tempi that are no tempo are reported whatever the search; other
        // faults only for tracks the search would have taken.
        const bool tempoOk = std::isfinite(t.bpm) && t.bpm >= 20.0 && t.bpm <= 999.0;
        if (!t.problem.empty() || !tempoOk) {
            skipped.push_back(skippedRow(t, checkTrack(t)));
            continue;
        }
        if (!passes(t, filter)) continue;
        if (const std::string why = checkTrack(t); !why.empty()) {
            skipped.push_back(skippedRow(t, why));
            continue;
        }
        chosen.push_back(&t);
    }
    std::stable_sort(chosen.begin(), chosen.end(), [](const Track* a, const Track* b) { return a->path < b->path; });
    std::vector<const Track*> matches;
    for (const Track* t : chosen) {
        std::string why;
        const auto cues = findCues(*t, nSections, why);
        if (!cues) {
            skipped.push_back(skippedRow(*t, why));
            continue;
        }
        matches.push_back(t);
        jobsToDo.push_back({t, snapToBeats(*t, *cues)});
    }
    for (const Row& r : skipped) std::fprintf(stderr, "loopd sections: %s: %s\n", r.path.c_str(), r.status.c_str());

    size_t exported = 0;
    if (!csvOut.empty()) {
        Settings s;
        s.targetBpm = targetBpm ? targetBpm : bpm;
        s.partsDir = partsDir;
        s.audioDir = audioDir;
        s.method = *stretch::methodFromName(method);
        std::vector<Row> rows(jobsToDo.size());
        Progress progress(jobsToDo.size(), isatty(STDERR_FILENO) != 0);
        std::atomic<size_t> next{0};
        auto work = [&] {
            for (size_t i = next++; i < jobsToDo.size(); i = next++) {
                const Job& j = jobsToDo[i];
                rows[i] = exportTrack(*j.track, j.cues, s, [&, i](double f) { progress.update(i, f); });
                progress.finished(i, rows[i].exported ? "exported " + rows[i].partFile : rows[i].path + ": " + rows[i].status);
            }
        };
        std::vector<std::thread> pool;
        for (int k = 1; k < std::min<int>(jobs, static_cast<int>(jobsToDo.size())); ++k) pool.emplace_back(work);
        work();
        for (auto& th : pool) th.join();
        progress.end();
        std::vector<Row> all;
        for (Row& r : rows) {
            if (r.exported) {
                ++exported;
                all.push_back(std::move(r));
            } else {
                skipped.push_back(std::move(r));
            }
        }
        for (Row& r : skipped) all.push_back(std::move(r));
        try {
            writeCsv(csvOut, all);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "loopd sections: %s\n", e.what());
            return 1;
        }
        std::fprintf(stderr, "loopd sections: %zu of %zu selected tracks exported, %zu skipped; CSV: %s\n", exported, matches.size(),
                     all.size() - exported, csvOut.c_str());
    }
    for (const Track* t : matches) std::printf("%s\n", t->path.c_str());
    std::fflush(stdout);
    const bool nothing = csvOut.empty() ? matches.empty() : exported == 0;
    if (nothing) std::fprintf(stderr, "loopd sections: nothing to %s\n", csvOut.empty() ? "select" : "export");
    return nothing ? 1 : 0;
}

} // namespace loopd
