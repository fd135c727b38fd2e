// Tempo, beats, downbeats and key of a whole piece of material (MaterialAnalysis.h).
#include "server/analysis/MaterialAnalysis.h"

#include <dsp/keydetection/GetKeyMode.h>
#include <dsp/tempotracking/DownBeat.h>
#include <soundtouch/BPMDetect.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>

#include "server/analysis/OnsetDetector.h"
#include "server/analysis/TempoTracker.h"

namespace loopd {

std::string keyName(int qmKey) {
    static const char* const kNames[12] = {"C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"};
    static const char* const kMinor[12] = {"Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm"};
    if (qmKey < 1 || qmKey > 24) return "";
    return qmKey <= 12 ? kNames[qmKey - 1] : kMinor[qmKey - 13];
}

namespace {

// The key most of GetKeyMode's frames name (its frames: 32768 samples at 48 kHz, no overlap).
void findKey(const std::vector<float>& x, double sampleRate, MaterialAnalysis& r) {
    GetKeyMode k(static_cast<int>(sampleRate), 440.0f, 10.0, 10.0);
    const size_t block = k.getBlockSize(), hop = k.getHopSize();
    std::vector<double> frame(block);
    std::map<int, int> votes;
    int frames = 0;
    for (size_t p = 0; p + block <= x.size(); p += hop) {
        for (size_t i = 0; i < block; ++i) frame[i] = x[p + i];
        double energy = 0.0;
        for (double v : frame) energy += v * v;
        const int key = k.process(frame.data());
        if (energy < 1e-6 * static_cast<double>(block)) continue; // silence names no key
        ++votes[key];
        ++frames;
    }
    if (frames == 0) return;
    const auto best = std::max_element(votes.begin(), votes.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    r.keyConfidence = static_cast<double>(best->second) / frames;
    if (r.keyConfidence >= 0.4) r.key = keyName(best->first);
}

// Which beat of the grid starts the bars: DownBeat on the material decimated to sampleRate/16.
int64_t findFirstDownbeat(const std::vector<float>& x, double sampleRate, const std::vector<double>& gridBeats, int beatsPerBar) {
    constexpr size_t kIncrement = TempoTracker::kStep, kDecimation = 16;
    DownBeat db(static_cast<float>(sampleRate), kDecimation, kIncrement);
    db.setBeatsPerBar(beatsPerBar);
    for (size_t p = 0; p + kIncrement <= x.size(); p += kIncrement) db.pushAudioBlock(x.data() + p);
    size_t length = 0;
    const float* audio = db.getBufferedAudio(length);
    std::vector<double> beats; // in detection-function steps
    for (double b : gridBeats) beats.push_back(b / static_cast<double>(kIncrement));
    std::vector<int> downbeats;
    db.findDownBeats(audio, length, beats, downbeats);
    if (downbeats.empty()) return -1;
    const int first = downbeats.front() % beatsPerBar; // bars are whole: the first beat with that phase
    return first < static_cast<int>(gridBeats.size()) ? static_cast<int64_t>(std::llround(gridBeats[static_cast<size_t>(first)])) : -1;
}

} // namespace

MaterialAnalysis analyseMaterial(const std::vector<float>& x, double sampleRate, double bpmLow, double bpmHigh, int beatsPerBar) {
    MaterialAnalysis r;
    const double seconds = static_cast<double>(x.size()) / sampleRate;
    findKey(x, sampleRate, r);
    TempoTracker tracker(sampleRate, bpmLow, bpmHigh, seconds + 1.0);
    tracker.push(x.data(), static_cast<int>(x.size()));
    // The tempo 8 s windows hear (every 4 s, the median): the live path's, which never halves
    // the test tempi; the whole file is then tracked around it.
    std::vector<double> windows;
    for (double t = 0.0; t + 8.0 <= seconds + 1e-9; t += 4.0)
        if (const double w = tracker.estimateBetween(t, t + 8.0).bpm; w > 0.0) windows.push_back(w);
    double hint = 0.0;
    if (!windows.empty()) {
        std::nth_element(windows.begin(), windows.begin() + static_cast<std::ptrdiff_t>(windows.size() / 2), windows.end());
        hint = windows[windows.size() / 2];
    }
    const TempoTracker::Estimate e = tracker.estimate(seconds + 1.0, hint);
    if (!(e.bpm > 0.0)) return r;
    r.bpm = e.bpm;
    r.confidence = e.confidence;

    // Onsets: each tracked beat moves onto one within 30 ms (a sixth of a beat at most).
    OnsetDetector detector(sampleRate);
    std::vector<OnsetDetector::Onset> found;
    detector.push(x.data(), static_cast<int>(x.size()), found);
    std::deque<int64_t> onsets;
    for (const auto& o : found) onsets.push_back(o.sample);
    double period = 60.0 / r.bpm * sampleRate; // the folded tempo's beat
    const double reach = std::min(0.030 * sampleRate, period / 6.0);
    for (int64_t b : e.beats) {
        const double d = TempoTracker::onsetOffset(onsets, static_cast<double>(b), reach);
        r.beats.push_back(std::isnan(d) ? b : b + std::llround(d));
    }
    // The grid: the tempo line's phase moved onto the onsets, stepped back to the first beat.
    const double phase = TempoTracker::snapToOnsets(e.phaseSample, e.beatPeriod, onsets, sampleRate, static_cast<int>(e.beats.size()));
    double first = phase - std::floor(phase / period) * period;
    // The line refined on the onsets themselves: the onset nearest each grid beat (within reach)
    // against the beat's number, least squares, twice. The tracker's slope alone, extrapolated
    // over a whole file, put a first downbeat 2.6 ms off; this one the onsets' own precision.
    for (int pass = 0; pass < 2; ++pass) {
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        int n = 0;
        for (int k = 0; first + k * period < static_cast<double>(x.size()); ++k) {
            const double b = first + k * period;
            const double best = TempoTracker::onsetOffset(onsets, b, reach);
            if (std::isnan(best)) continue;
            sx += k; sy += b + best; sxx += static_cast<double>(k) * k; sxy += k * (b + best);
            ++n;
        }
        if (n < 8) break;
        const double slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
        if (!(slope > 0.9 * period && slope < 1.1 * period)) break;
        period = slope;
        first = (sy - slope * sx) / n;
        first -= std::floor(first / period) * period;
    }
    r.bpm = TempoTracker::fold(60.0 * sampleRate / period, bpmLow, bpmHigh);
    std::vector<double> grid;
    for (double b = first; b < static_cast<double>(x.size()); b += period) grid.push_back(b);
    if (grid.empty()) return r;
    r.firstBeat = static_cast<int64_t>(std::llround(grid.front()));
    if (grid.size() >= static_cast<size_t>(2 * beatsPerBar)) r.firstDownbeat = findFirstDownbeat(x, sampleRate, grid, beatsPerBar);

    // Unsure: ask SoundTouch's autocorrelation tracker too.
    if (r.confidence < 0.5) {
        soundtouch::BPMDetect bd(1, static_cast<int>(sampleRate));
        for (size_t p = 0; p < x.size(); p += 4096)
            bd.inputSamples(x.data() + p, static_cast<int>(std::min<size_t>(4096, x.size() - p)));
        const double other = TempoTracker::fold(bd.getBpm(), bpmLow, bpmHigh);
        if (other > 0.0 && std::fabs(other - r.bpm) <= 1.0) r.confidence = 0.5;
    }
    return r;
}

} // namespace loopd
