#pragma once
// Crowdstream's section exporter (its struct_loader.py) as a library: track structure JSON
// (allin1's output: path, bpm, beats, downbeats, beat_positions, segments, optional key), the
// Rekordbox collection XML, selection by tempo and key, the section's cue points, and the
// section's audio cropped and stretched to a target tempo. `loopd sections` (app/SectionsCli.cpp)
// and the server's /cue_section (compat/crowdstream) are built on it. See docs/SECTIONS.md.
//
// Threads: everything here allocates and reads files; call it from non-real-time threads only.
// Functions on different tracks may run on different threads at once.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/io/AudioFile.h"
#include "stretch/Stretcher.h"

namespace loopd::sections {

struct Segment {
    double start = 0.0, end = 0.0;
    std::string label;
};

struct Track {
    std::string jsonFile;         // where it was read from
    std::string name;             // the JSON file's stem (the original's mapping key)
    nlohmann::json document;      // the file as read (JSON files are never written)
    std::string path;             // the audio file the JSON names
    double bpm = 0.0;
    std::string key;
    std::vector<double> beats, downbeats;
    std::vector<int> beatPositions;
    std::vector<Segment> segments;
    std::string problem;          // why this track cannot be used ("": usable)
};

// Reads one structure JSON; never throws (a problem is put in Track::problem: unreadable JSON,
// not an object, no "path", non-numeric fields).
Track readTrack(const std::filesystem::path& jsonFile);
// Why a track cannot be exported ("": it can): its problem, a BPM that is no tempo (20..999),
// no segments, no beats, a segment that is no time span. Call after applyRekordbox.
std::string checkTrack(const Track& t);
// Every *.json of `dir`, in file-name order. Throws std::runtime_error when `dir` is no directory.
std::vector<Track> readStructDir(const std::filesystem::path& dir);

// Rekordbox's collection XML (DJ_PLAYLISTS/COLLECTION/TRACK with TEMPO children).
struct TempoMarker {
    double inizio = 0.0, bpm = 0.0;
    std::string metro;
    int battito = 0;
};
struct RekordboxTrack {
    int trackId = 0;
    std::string name;
    double averageBpm = 0.0;
    std::string location;         // Location decoded into a file system path
    std::string tonality;
    int totalTime = 0;
    std::vector<TempoMarker> tempos;
};
// Throws std::runtime_error naming the file and the parser's complaint.
std::vector<RekordboxTrack> readRekordbox(const std::string& xmlFile);
// "file://localhost/Users/x/My%20Track.wav" → "/Users/x/My Track.wav".
std::string locationToPath(std::string_view location);

// BPM and key from the XML into the tracks, in memory only. A track is matched by its full path
// (case-insensitive, the original's rule), else by file name; with no location match, the key
// also comes from a TRACK whose Name the JSON path contains (the original's key rule).
struct RekordboxReport {
    int bpmOverrides = 0, keysSet = 0;
    std::vector<std::string> unmatched; // Names of XML tracks that matched no JSON
};
RekordboxReport applyRekordbox(std::vector<Track>& tracks, const std::vector<RekordboxTrack>& xml);

// A key as 0..23 (pitch class * 2 + 1 for minor) from the usual spellings: "Gm", "G minor",
// "gmin", "F#", "Bb major", "Abm", Camelot ("6A"), Open Key ("3m"). nullopt: not a key.
std::optional<int> keyCode(std::string_view spelling);
// The original's rule (case-insensitive equality) widened to equal keys in any spelling.
bool keyMatches(std::string_view trackKey, const std::vector<std::string>& wanted);

struct Filter {
    std::optional<double> bpm, bpmMin, bpmMax; // bpmMin/bpmMax win over bpm ± delta, as in the original
    double delta = 2.0;
    std::vector<std::string> keys;             // empty: any key
};
bool passes(const Track& t, const Filter& f);

// Cue points in seconds of the original audio.
struct Cues {
    double ini = 0.0, begin = 0.0, end = 0.0;
};
// The original's rules: ini = end of the last "intro" segment; begin/end = start/end of the
// n-th segment (1-indexed) of those from the first one starting at or after ini. nullopt with
// the reason in `why`.
std::optional<Cues> findCues(const Track& t, int nSections, std::string& why);
// Each cue moved to the nearest beat of the track's beat list when one lies within half a beat
// (so that sections loop cleanly; allin1's boundaries already sit within milliseconds of beats).
Cues snapToBeats(const Track& t, const Cues& c);

// The section's audio: frames [ini, end) of `audioPath` (at `rate`; 0 = the file's own rate),
// stretched by 1/speed with `method` (a speed of exactly 1 copies). Throws std::runtime_error.
struct Rendered {
    double sampleRate = 0.0;
    std::string sourceSampleFormat;            // the file's ("int16", ..., "" for others)
    std::vector<std::vector<float>> cropped;   // the section as it is in the file
    std::vector<std::vector<float>> stretched; // the section at the target tempo
};
Rendered renderSection(const std::string& audioPath, const Cues& cues, double speed, stretch::Method method,
                       double rate, const std::function<void(double)>& progress = {});

// /cue_section's buffer: the section of the track `jsonFile` describes (section `nSections`,
// cues on beats), at `options.targetRate`, stretched to `targetBpm`; its analysed tempo is
// `targetBpm` and its downbeat the first one at or after the cut. The audio is the JSON's path,
// else its file name beside the JSON or one directory up (Crowdstream keeps stems/dj/struct/*.json
// beside stems/dj/*.wav). `pathProblem` vets that file (--root). Throws a sentence for /fail.
std::unique_ptr<BufferData> sectionBuffer(const std::string& jsonFile, double targetBpm, int nSections, stretch::Method method,
                                          const LoadOptions& options,
                                          const std::function<std::string(const std::string&)>& pathProblem);

// The audio file of a track: `audioDir`/<file name of path> when that exists, else the path.
std::string audioFileFor(const Track& t, const std::string& audioDir);

// Python's repr of a float (the original's CSV cells): shortest round trip, "120.0" not "120".
std::string pyFloat(double v);
// The original's M:SS.ss.
std::string minutesSeconds(double seconds);

} // namespace loopd::sections
