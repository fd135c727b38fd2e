#!/usr/bin/python3
"""Speed of `loopd sections`: seconds of work per minute of exported audio with each stretch
method (Rubber Band R3 and R2 in offline mode, SoundTouch WSOLA), and the speed-up of --jobs 2.

    bench/sections_bench.py [--tracks 4] [--minutes 1.5] [--runs 3] [--loopd build/server/loopd]

Makes TRACKS stereo 44.1 kHz tracks (a chord pad, a bass line and a click on every beat, at
118-125 BPM) with structure JSON whose section runs MINUTES from the intro's end, then runs the
exporter to 122 BPM, alternating the configurations run after run; prints medians side by side.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import wave

import numpy as np

RATE = 44100


def make(directory, name, bpm, minutes):
    beat = 60.0 / bpm
    intro = 16 * beat
    total = intro + minutes * 60.0 + 8 * beat
    n = int(total * RATE)
    t = np.arange(n) / RATE
    rng = np.random.default_rng(int(bpm * 10))
    x = 0.08 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    x += 0.15 * np.sin(2 * np.pi * 55.0 * t) * (0.5 + 0.5 * np.sign(np.sin(np.pi * t / beat)))
    click = 0.5 * np.exp(-np.arange(600) / 80.0) * rng.uniform(-1, 1, 600)
    beats = np.arange(0.0, total - 0.02, beat)
    for b in beats:
        i = int(b * RATE)
        x[i:i + 600] += click[: n - i]
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(os.path.join(directory, name + ".wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.repeat(pcm, 2).tobytes())
    segs = [{"start": 0.0, "end": intro, "label": "intro"},
            {"start": intro, "end": intro + minutes * 60.0, "label": "verse"},
            {"start": intro + minutes * 60.0, "end": total, "label": "outro"}]
    doc = {"path": "/music/%s.wav" % name, "bpm": bpm, "beats": [round(b, 4) for b in beats],
           "downbeats": [round(b, 4) for b in beats[::4]], "segments": segs}
    with open(os.path.join(directory, "struct", name + ".json"), "w") as f:
        json.dump(doc, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=1.5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--loopd", default=os.path.join(os.path.dirname(__file__), "../build/server/loopd"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "struct"))
        for k in range(a.tracks):
            make(d, "t%d" % k, 118.0 + (7.0 * k) / max(1, a.tracks - 1), a.minutes)
        configs = [("rb3", 1), ("rb2", 1), ("wsola", 1), ("rb3", 2)]
        times = {c: [] for c in configs}
        exported_minutes = None
        for run in range(a.runs):
            for method, jobs in configs:
                out = os.path.join(d, "out")
                start = time.perf_counter()
                subprocess.run([a.loopd, "sections", os.path.join(d, "struct"), "--bpm", "122", "--delta", "10",
                                "--n-sections", "1", "--audio-dir", d, "--parts-dir", out, "--csv-out", out + ".csv",
                                "--stretch-method", method, "--jobs", str(jobs)], check=True, capture_output=True)
                times[(method, jobs)].append(time.perf_counter() - start)
                if exported_minutes is None:
                    frames = 0
                    for f in os.listdir(out):
                        if f.endswith(".wav"):
                            with wave.open(os.path.join(out, f)) as w:
                                frames += w.getnframes()
                    exported_minutes = frames / RATE / 60.0
        print("loopd sections: %d tracks, %.2f min of exported audio at 122 BPM, median of %d runs" %
              (a.tracks, exported_minutes, a.runs))
        base = statistics.median(times[("rb3", 1)])
        for c in configs:
            m = statistics.median(times[c])
            print("  %-6s --jobs %d: %6.2f s  = %5.2f s per minute exported  (%.2fx R3 --jobs 1)" %
                  (c[0], c[1], m, m / exported_minutes, base / m))


if __name__ == "__main__":
    main()
