#include "server/library/Sections.h"

#include <fmt/format.h>
#include <pugixml.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "server/io/AudioFile.h"
#include "stretch/OfflineStretch.h"

namespace loopd::sections {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string_view s) {
    std::string r(s);
    std::transform(r.begin(), r.end(), r.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return r;
}

std::string trim(std::string_view s) {
    size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return std::string(s.substr(a, b - a));
}

// A JSON number, or a string holding one (some exporters quote them); throws with the field's name.
double number(const nlohmann::json& v, const char* what) {
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {
        const std::string s = v.get<std::string>();
        char* end = nullptr;
        const double d = std::strtod(s.c_str(), &end);
        if (end != s.c_str() && *end == '\0') return d;
    }
    throw std::runtime_error(std::string(what) + " is not a number");
}

std::vector<double> numbers(const nlohmann::json& doc, const char* field) {
    std::vector<double> out;
    if (!doc.contains(field) || doc[field].is_null()) return out;
    if (!doc[field].is_array()) throw std::runtime_error(std::string(field) + " is not a list");
    out.reserve(doc[field].size());
    for (const auto& v : doc[field]) out.push_back(number(v, field));
    return out;
}

} // namespace

Track readTrack(const fs::path& jsonFile) {
    Track t;
    t.jsonFile = jsonFile.string();
    t.name = jsonFile.stem().string();
    try {
        std::ifstream in(jsonFile, std::ios::binary);
        if (!in) throw std::runtime_error("cannot be read");
        std::stringstream text;
        text << in.rdbuf();
        t.document = nlohmann::json::parse(text.str(), nullptr, false);
        if (t.document.is_discarded()) throw std::runtime_error("is not valid JSON");
        if (!t.document.is_object()) throw std::runtime_error("is not a JSON object");
        const auto& d = t.document;
        if (d.contains("path") && d["path"].is_string()) t.path = d["path"].get<std::string>();
        if (t.path.empty()) throw std::runtime_error("names no audio file (\"path\")");
        t.bpm = d.contains("bpm") ? number(d["bpm"], "bpm") : 0.0;
        if (d.contains("key") && d["key"].is_string()) t.key = d["key"].get<std::string>();
        t.beats = numbers(d, "beats");
        t.downbeats = numbers(d, "downbeats");
        for (double p : numbers(d, "beat_positions")) t.beatPositions.push_back(static_cast<int>(p));
        if (d.contains("segments") && d["segments"].is_array()) {
            for (const auto& s : d["segments"]) {
                if (!s.is_object()) throw std::runtime_error("a segment is not an object");
                Segment seg;
                seg.start = s.contains("start") ? number(s["start"], "segment start") : 0.0;
                seg.end = s.contains("end") ? number(s["end"], "segment end") : 0.0;
                if (s.contains("label") && s["label"].is_string()) seg.label = s["label"].get<std::string>();
                t.segments.push_back(std::move(seg));
            }
        }
    } catch (const std::exception& e) {
        t.problem = fmt::format("{} {}", jsonFile.filename().string(), e.what());
    }
    return t;
}

std::string checkTrack(const Track& t) {
    if (!t.problem.empty()) return t.problem;
    if (!(std::isfinite(t.bpm) && t.bpm >= 20.0 && t.bpm <= 999.0)) return fmt::format("bpm {} is not a tempo (20..999)", pyFloat(t.bpm));
    if (t.segments.empty()) return "no segments";
    if (t.beats.empty()) return "no beats";
    for (const auto& s : t.segments)
        if (!(std::isfinite(s.start) && std::isfinite(s.end) && s.start >= 0.0 && s.end > s.start))
            return fmt::format("segment '{}' {}..{} is not a time span", s.label, pyFloat(s.start), pyFloat(s.end));
    return {};
}

std::vector<Track> readStructDir(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw std::runtime_error("struct directory does not exist: " + dir.string());
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.path().extension() == ".json" && !e.is_directory()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    std::vector<Track> tracks;
    tracks.reserve(files.size());
    for (const auto& f : files) tracks.push_back(readTrack(f));
    return tracks;
}

// ---------------------------------------------------------------------------------------------
// Rekordbox

std::string locationToPath(std::string_view location) {
    std::string loc = trim(location);
    if (loc.rfind("file://localhost", 0) == 0) loc.erase(0, 16);
    else if (loc.rfind("file://", 0) == 0) loc.erase(0, 7);
    std::string out;
    out.reserve(loc.size());
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (size_t i = 0; i < loc.size(); ++i) {
        if (loc[i] == '%' && i + 2 < loc.size() && hex(loc[i + 1]) >= 0 && hex(loc[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex(loc[i + 1]) * 16 + hex(loc[i + 2])));
            i += 2;
        } else {
            out.push_back(loc[i]);
        }
    }
    if (!out.empty() && out[0] != '/') out.insert(out.begin(), '/');
    return out;
}

std::vector<RekordboxTrack> readRekordbox(const std::string& xmlFile) {
    pugi::xml_document doc;
    const pugi::xml_parse_result r = doc.load_file(xmlFile.c_str());
    if (!r) throw std::runtime_error(fmt::format("Rekordbox XML {}: {} (at byte {})", xmlFile, r.description(), r.offset));
    std::vector<RekordboxTrack> tracks;
    const pugi::xml_node collection = doc.child("DJ_PLAYLISTS").child("COLLECTION");
    for (pugi::xml_node tr : collection.children("TRACK")) {
        RekordboxTrack t;
        t.trackId = tr.attribute("TrackID").as_int();
        t.name = tr.attribute("Name").as_string();
        t.averageBpm = tr.attribute("AverageBpm").as_double();
        t.location = locationToPath(tr.attribute("Location").as_string());
        t.tonality = tr.attribute("Tonality").as_string();
        t.totalTime = tr.attribute("TotalTime").as_int();
        for (pugi::xml_node m : tr.children("TEMPO"))
            t.tempos.push_back({m.attribute("Inizio").as_double(), m.attribute("Bpm").as_double(), m.attribute("Metro").as_string(),
                                m.attribute("Battito").as_int()});
        tracks.push_back(std::move(t));
    }
    return tracks;
}

RekordboxReport applyRekordbox(std::vector<Track>& tracks, const std::vector<RekordboxTrack>& xml) {
    RekordboxReport report;
    std::vector<bool> used(xml.size(), false);
    for (Track& t : tracks) {
        if (t.path.empty()) continue;
        const std::string full = lower(trim(t.path));
        const std::string file = lower(fs::path(t.path).filename().string());
        const RekordboxTrack* match = nullptr;
        auto find = [&](auto&& pred) {
            for (size_t i = 0; i < xml.size() && !match; ++i)
                if (pred(xml[i])) match = &xml[i], used[i] = true;
        };
        find([&](const RekordboxTrack& x) { return !x.location.empty() && lower(trim(x.location)) == full; });
        find([&](const RekordboxTrack& x) { return !x.location.empty() && lower(fs::path(x.location).filename().string()) == file; });
        if (match && match->averageBpm > 0.0) {
            t.bpm = match->averageBpm;
            ++report.bpmOverrides;
        }
        find([&](const RekordboxTrack& x) {
            const std::string name = lower(trim(x.name));
            return !name.empty() && !x.tonality.empty() && full.find(name) != std::string::npos;
        });
        if (match && !match->tonality.empty()) {
            t.key = match->tonality;
            ++report.keysSet;
        }
    }
    for (size_t i = 0; i < xml.size(); ++i)
        if (!used[i]) report.unmatched.push_back(xml[i].name.empty() ? xml[i].location : xml[i].name);
    return report;
}

// ---------------------------------------------------------------------------------------------
// Keys

std::optional<int> keyCode(std::string_view spelling) {
    const std::string s = lower(trim(spelling));
    if (s.empty()) return std::nullopt;
    // Camelot (8B = C major, 8A = A minor) and Open Key (1d = C major, 1m = A minor): a number
    // on the circle of fifths and a letter.
    if (std::isdigit(static_cast<unsigned char>(s[0]))) {
        size_t i = 0;
        int n = 0;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) && n < 100) n = n * 10 + (s[i++] - '0');
        const std::string rest = trim(s.substr(i));
        if (n < 1 || n > 12 || rest.size() != 1) return std::nullopt;
        bool minor = false;
        int pc = 0;
        if (rest == "b") pc = 7 * (n - 8);
        else if (rest == "a") minor = true, pc = 9 + 7 * (n - 8);
        else if (rest == "d") pc = 7 * (n - 1);
        else if (rest == "m") minor = true, pc = 9 + 7 * (n - 1);
        else return std::nullopt;
        return ((pc % 12 + 12) % 12) * 2 + (minor ? 1 : 0);
    }
    static const int kLetter[7] = {9, 11, 0, 2, 4, 5, 7}; // a..g
    if (s[0] < 'a' || s[0] > 'g') return std::nullopt;
    int pc = kLetter[s[0] - 'a'];
    size_t i = 1;
    if (i < s.size() && (s[i] == '#')) pc += 1, ++i;
    else if (s.compare(i, 3, "\xe2\x99\xaf") == 0) pc += 1, i += 3; // ♯
    else if (s.compare(i, 3, "\xe2\x99\xad") == 0) pc -= 1, i += 3; // ♭
    else if (i < s.size() && s[i] == 'b') pc -= 1, ++i;
    std::string mode = trim(s.substr(i));
    if (!mode.empty() && mode[0] == '-') mode = "m" + mode.substr(1);
    bool minor;
    if (mode.empty() || mode == "maj" || mode == "major" || mode == "dur") minor = false;
    else if (mode == "m" || mode == "min" || mode == "minor" || mode == "moll") minor = true;
    else return std::nullopt;
    return ((pc % 12 + 12) % 12) * 2 + (minor ? 1 : 0);
}

bool keyMatches(std::string_view trackKey, const std::vector<std::string>& wanted) {
    const std::string have = lower(trim(trackKey));
    const auto code = keyCode(trackKey);
    for (const std::string& w : wanted) {
        if (lower(trim(w)) == have) return true;
        if (code)
            if (const auto c = keyCode(w); c && *c == *code) return true;
    }
    return false;
}

bool passes(const Track& t, const Filter& f) {
    double lo = -INFINITY, hi = INFINITY;
    if (f.bpmMin || f.bpmMax) {
        if (f.bpmMin) lo = *f.bpmMin;
        if (f.bpmMax) hi = *f.bpmMax;
    } else if (f.bpm) {
        lo = *f.bpm - f.delta;
        hi = *f.bpm + f.delta;
    }
    if (!(lo <= t.bpm && t.bpm <= hi)) return false;
    return f.keys.empty() || keyMatches(t.key, f.keys);
}

// ---------------------------------------------------------------------------------------------
// Cues

std::optional<Cues> findCues(const Track& t, int nSections, std::string& why) {
    const Segment* intro = nullptr;
    for (const Segment& s : t.segments)
        if (lower(s.label) == "intro") intro = &s;
    if (!intro) {
        why = "no intro segment";
        return std::nullopt;
    }
    if (nSections <= 0) {
        why = "--n-sections must be at least 1";
        return std::nullopt;
    }
    const double ini = intro->end;
    size_t first = t.segments.size();
    for (size_t i = 0; i < t.segments.size(); ++i)
        if (t.segments[i].start >= ini) {
            first = i;
            break;
        }
    if (first == t.segments.size()) {
        why = "no segment after the intro";
        return std::nullopt;
    }
    const size_t target = first + static_cast<size_t>(nSections - 1);
    if (target >= t.segments.size()) {
        why = fmt::format("section {} after the intro does not exist (the track has {} from there)", nSections,
                          t.segments.size() - first);
        return std::nullopt;
    }
    return Cues{ini, t.segments[target].start, t.segments[target].end};
}

Cues snapToBeats(const Track& t, const Cues& c) {
    if (t.beats.empty() || !(t.bpm > 0.0)) return c;
    const double half = 30.0 / t.bpm;
    auto snap = [&](double x) {
        const auto it = std::lower_bound(t.beats.begin(), t.beats.end(), x);
        double best = x, dist = INFINITY;
        if (it != t.beats.end() && *it - x < dist) best = *it, dist = *it - x;
        if (it != t.beats.begin() && x - *(it - 1) < dist) best = *(it - 1), dist = x - *(it - 1);
        return dist <= half ? best : x;
    };
    Cues s{snap(c.ini), snap(c.begin), snap(c.end)};
    if (!(s.end > s.ini)) return c;
    return s;
}

std::string audioFileFor(const Track& t, const std::string& audioDir) {
    if (!audioDir.empty()) {
        const fs::path candidate = fs::path(audioDir) / fs::path(t.path).filename();
        std::error_code ec;
        if (fs::is_regular_file(candidate, ec)) return candidate.string();
    }
    return t.path;
}

// ---------------------------------------------------------------------------------------------
// Audio

Rendered renderSection(const std::string& audioPath, const Cues& cues, double speed, stretch::Method method, double rate,
                       const std::function<void(double)>& progress) {
    std::error_code ec;
    if (!fs::is_regular_file(audioPath, ec)) throw std::runtime_error("audio file not found: " + audioPath);
    if (!(std::isfinite(speed) && speed >= 1.0 / 16.0 && speed <= 16.0))
        throw std::runtime_error(fmt::format("speed {} is outside 1/16..16", speed));
    const AudioFileInfo info = probeAudioFile(audioPath);
    const auto first = std::clamp<int64_t>(std::llround(cues.ini * info.sampleRate), 0, info.frames);
    const auto last = std::clamp<int64_t>(std::llround(cues.end * info.sampleRate), 0, info.frames);
    if (last <= first)
        throw std::runtime_error(fmt::format("the section {:.3f}..{:.3f} s lies beyond the end of {} ({:.3f} s)", cues.ini, cues.end,
                                             audioPath, static_cast<double>(info.frames) / info.sampleRate));
    LoadOptions lo;
    lo.startFrame = first;
    lo.numFrames = last - first;
    lo.targetRate = rate > 0.0 ? rate : info.sampleRate;
    lo.what = "a section";
    const auto data = loadAudioFile(audioPath, lo);
    Rendered r;
    r.sampleRate = lo.targetRate;
    r.sourceSampleFormat = info.sampleFormat;
    r.cropped.resize(static_cast<size_t>(data->numChannels));
    std::vector<const float*> in;
    for (int c = 0; c < data->numChannels; ++c) {
        r.cropped[static_cast<size_t>(c)].assign(data->channel(c), data->channel(c) + data->numFrames);
        in.push_back(r.cropped[static_cast<size_t>(c)].data());
    }
    if (speed == 1.0) {
        r.stretched = r.cropped;
        if (progress) progress(1.0);
    } else {
        r.stretched = stretch::stretchWhole(method, in, data->numFrames, r.sampleRate, 1.0 / speed, progress);
    }
    return r;
}

std::unique_ptr<BufferData> sectionBuffer(const std::string& jsonFile, double targetBpm, int nSections, stretch::Method method,
                                          const LoadOptions& options,
                                          const std::function<std::string(const std::string&)>& pathProblem) {
    const Track t = readTrack(jsonFile);
    if (const std::string why = checkTrack(t); !why.empty()) throw std::runtime_error(jsonFile + ": " + why);
    std::string why;
    const auto found = findCues(t, nSections, why);
    if (!found) throw std::runtime_error(jsonFile + ": " + why);
    const Cues cues = snapToBeats(t, *found);
    const fs::path dir = fs::path(jsonFile).parent_path();
    const fs::path name = fs::path(t.path).filename();
    std::string audio;
    std::error_code ec;
    for (const fs::path& p : {fs::path(t.path), dir / name, dir.parent_path() / name})
        if (fs::is_regular_file(p, ec)) {
            audio = p.string();
            break;
        }
    if (audio.empty()) throw std::runtime_error(jsonFile + ": audio file not found: " + t.path + " (nor " + name.string() + " beside the JSON or above it)");
    if (const std::string refused = pathProblem ? pathProblem(audio) : std::string(); !refused.empty()) throw std::runtime_error(refused);
    const double speed = targetBpm / t.bpm;
    // Refuse what the buffer limit or the memory budget cannot hold before the stretch spends
    // seconds on it: an estimate of the output (with room for rounding at both rates) is held
    // while it runs, twice over for the crop's and the stretch's own copies.
    const AudioFileInfo info = probeAudioFile(audio);
    const double outFrames = ((cues.end - cues.ini) * options.targetRate + 64.0) / speed;
    if (outFrames * info.channels > static_cast<double>(options.maxSamples))
        throw std::runtime_error("section too large for the buffer limit: " + audio);
    MemoryLease working;
    if (options.budget)
        working = options.budget->reserve(static_cast<int64_t>(2.0 * outFrames * info.channels * sizeof(float)), options.what + " (stretching)");
    const Rendered r = renderSection(audio, cues, speed, method, options.targetRate);
    working.release();
    auto data = BufferData::zeros(static_cast<int64_t>(r.stretched[0].size()), info.channels, options.targetRate, options.budget, options.what);
    for (int c = 0; c < data->numChannels; ++c)
        std::copy(r.stretched[static_cast<size_t>(c)].begin(), r.stretched[static_cast<size_t>(c)].end(), data->channel(c));
    data->sourceRate = info.sampleRate;
    data->path = audio;
    data->analysedBpm.store(static_cast<float>(targetBpm));
    for (double db : t.downbeats)
        if (db >= cues.ini - 1e-6) {
            data->analysedDownbeat.store(std::llround((db - cues.ini) * options.targetRate / speed));
            break;
        }
    return data;
}

// ---------------------------------------------------------------------------------------------
// Formatting

std::string pyFloat(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    std::string s = fmt::format("{}", v);
    if (s.find_first_of(".en") == std::string::npos) s += ".0";
    return s;
}

std::string minutesSeconds(double seconds) {
    seconds = std::max(0.0, seconds);
    const int m = static_cast<int>(std::floor(seconds / 60.0));
    return fmt::format("{}:{:05.2f}", m, seconds - 60.0 * m);
}

} // namespace loopd::sections
