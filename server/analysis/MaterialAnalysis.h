#pragma once
// Tempo, beats, downbeats and key of a whole piece of material (a loaded buffer), for
// /b_analyze and /b_beats:
//   beats     TempoTracker over the whole file (qm-dsp's complex-domain detection function and
//             TempoTrackV2); each beat moved onto an onset (OnsetDetector) within 30 ms;
//   tempo     the slope of the tracked beats, folded into the range; where qm-dsp is unsure
//             (confidence under 0.5) SoundTouch's BPMDetect is asked too, and the two agreeing
//             within 1 BPM lift the confidence to 0.5;
//   downbeats qm-dsp's DownBeat (spectral change between beats, at 3 kHz) on the beat grid;
//   key       qm-dsp's GetKeyMode (chroma against key profiles, frame by frame): the key most
//             frames name, "" when under 40 % of them agree.
// A grid: the first beat and first downbeat are those of a straight tempo line through the
// beats (moved onto the onsets), so `bpm` and `firstDownbeat` place every bar of steady material.
//
// Threads: any but the audio thread (it allocates); a few seconds of CPU per 5 minutes of audio.
#include <cstdint>
#include <string>
#include <vector>

namespace loopd {

struct MaterialAnalysis {
    double bpm = 0.0;          // 0: no beat found
    double confidence = 0.0;   // 0..1
    int64_t firstBeat = -1;    // frames
    int64_t firstDownbeat = -1;
    std::string key;           // "Am", "F#", ...; "" when unsure
    double keyConfidence = 0.0;
    std::vector<int64_t> beats; // frames of every tracked beat
};

// `mono`: the material (channels summed); throws nothing; too little (< 3 s) or silent material
// gives bpm 0 (the caller says why).
MaterialAnalysis analyseMaterial(const std::vector<float>& mono, double sampleRate, double bpmLow, double bpmHigh, int beatsPerBar);

// The name of qm-dsp's GetKeyMode key index (1..12 major from C, 13..24 minor from C); "" for 0.
std::string keyName(int qmKey);

} // namespace loopd
