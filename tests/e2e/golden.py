"""Golden renders: offline scores that exercise every node type, the looper, the Crowdstream
namespace, the stretch engines, the effects and scsynth's extras, rendered with `loopd --nrt`.

The renders' SHA-256 digests are kept in golden/renders.json. test_golden.py renders every score
again and demands the same bits: a change that means to leave what loopd does alone (a
restructure, a refactor) must leave every render identical. Regenerate only on purpose, when the
sound is meant to change, and say why in the commit:

    LOOPD_GOLDEN_UPDATE=1 /usr/bin/python3 -m unittest test_golden     (in tests/e2e)

Sources are made here, deterministically (no files from outside), so a score means the same on
every machine.
"""
import math
import os
import struct
import wave

import oscutil

m = oscutil.message


def write_wav(path, channels, rate=48000):
    """16-bit WAV from lists of floats in [-1, 1] (rounded, so every machine writes the same bytes)."""
    with wave.open(path, "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(len(channels[0])):
            for c in channels:
                frames += struct.pack("<h", int(round(max(-1.0, min(1.0, c[i])) * 32767)))
        w.writeframes(bytes(frames))


def noise(seed):
    """A small LCG: the same numbers everywhere."""
    state = seed & 0xFFFFFFFF
    while True:
        state = (1664525 * state + 1013904223) & 0xFFFFFFFF
        yield state / 2147483648.0 - 1.0


def drums(seconds=2.0, bpm=120.0, rate=48000, seed=1):
    """A beat: a decaying noise burst and a pitched thump on every beat, a hat on the off-beats."""
    n = int(seconds * rate)
    beat = int(60.0 * rate / bpm)
    rnd = noise(seed)
    out = []
    for i in range(n):
        t = i % beat
        h = (i + beat // 2) % beat
        v = 0.35 * math.exp(-t / (0.02 * rate)) * next(rnd)
        v += 0.4 * math.exp(-t / (0.08 * rate)) * math.sin(2 * math.pi * 70.0 * t / rate)
        v += 0.1 * math.exp(-h / (0.005 * rate)) * next(rnd)
        out.append(v)
    return out


def chord(seconds, freqs, amp=0.2, rate=48000):
    n = int(seconds * rate)
    return [amp * sum(math.sin(2 * math.pi * f * i / rate) for f in freqs) / len(freqs) for i in range(n)]


def sweep(seconds, f0, f1, amp=0.4, rate=48000):
    n = int(seconds * rate)
    k = math.log(f1 / f0) / seconds
    return [amp * math.sin(2 * math.pi * f0 * (math.exp(k * i / rate) - 1) / k) for i in range(n)]


def sources(d):
    """Writes the source files into directory d; returns their paths by name."""
    paths = {}
    beat = drums(2.0)
    paths["drums"] = os.path.join(d, "drums.wav")
    write_wav(paths["drums"], [beat, drums(2.0, seed=7)])
    paths["pad"] = os.path.join(d, "pad.wav")
    write_wav(paths["pad"], [chord(3.0, [220.0, 277.18, 329.63]), chord(3.0, [220.0, 261.63, 329.63])])
    paths["sweep"] = os.path.join(d, "sweep.wav")
    write_wav(paths["sweep"], [sweep(1.5, 100.0, 4000.0)])  # mono
    paths["input"] = os.path.join(d, "input.wav")  # what the nrt input (and the looper) hears
    left = [a + b for a, b in zip(drums(8.0, seed=3), chord(8.0, [440.0], 0.1))]
    write_wav(paths["input"], [left, drums(8.0, seed=5)])
    return paths


def scores(p):
    """name -> (list of (seconds, [messages]), uses the input file)."""
    s = {}

    # Every node type and generic tree command: players (loop, one-shot, backwards, mono with
    # outMask, startFrac, startWith/stopWith), groups (gain, pan, mute, solo), ramps, pause and
    # resume, replace, the input node, eq3 and every effect, buses and /n_map, /b_gen.
    s["nodes"] = ([
        (0.0, [m("/b_allocRead", 1, p["drums"]), m("/b_allocRead", 2, p["pad"]), m("/b_allocRead", 3, p["sweep"]),
               m("/b_alloc", 4, 4800, 1)]),
        (0.01, [m("/b_gen", 4, "sine1", 5, 1.0, 0.5, 0.25)]),
        (0.05, [m("/g_new", 10, 1, 0, 20, 1, 0, 21, 0, 20),
                m("/s_new", "player", 100, 0, 10, "buf", 1, "loop", 1, "gain", 0.6),
                m("/s_new", "player", 101, 1, 10, "buf", 2, "loop", 1, "rate", 1.01, "pan", -0.4, "gain", 0.5),
                m("/s_new", "player", 102, 0, 21, "buf", 3, "loop", 0, "rate", -0.7, "startFrac", 0.9, "gain", 0.7),
                m("/s_new", "player", 103, 1, 21, "buf", 4, "loop", 1, "gain", 0.2, "outMask", 3),
                m("/s_new", "input", 104, 1, 20, "gain", 0.3, "pan", 0.3),
                m("/s_new", "eq3", 110, 1, 10, "low", 1.0, "mid", 1.0, "high", 1.0),
                m("/s_new", "filter", 111, 1, 20, "mode", "lp", "cutoffHz", 1200.0, "q", 2.0, "lfoBeats", 2.0, "lfoDepthOctaves", 2.0),
                m("/s_new", "delay", 112, 1, 20, "delayBeats", 0.75, "feedback", 0.4, "mix", 0.3, "pingpong", 1),
                m("/s_new", "reverb", 113, 1, 0, "room", 0.6, "damping", 0.4, "mix", 0.2),
                m("/s_new", "gain", 114, 1, 0, "gainDb", -3.0),
                m("/s_new", "limiter", 115, 1, 0, "ceilingDb", -6.0)]),
        (0.5, [m("/n_ramp", 110, "low", 0.0, 0.5), m("/n_ramp", 101, "pan", 0.6, 1.0), m("/tempo", 140.0, 2.0)]),
        (0.8, [m("/s_new", "stutter", 116, 1, 10, "division", 16), m("/n_set", 116, "engage", 1)]),
        (1.0, [m("/n_set", 20, "gain", 0.7, "pan", -0.3), m("/c_set", 5, 0.25), m("/n_map", 100, "gain", 5)]),
        (1.3, [m("/n_set", 116, "engage", 0), m("/c_set", 5, 0.8), m("/n_run", 101, 0)]),
        (1.6, [m("/n_run", 101, 1), m("/n_set", 111, "mode", "bp", "lfoShape", "triangle"), m("/n_set", 21, "solo", 1)]),
        (1.9, [m("/n_set", 21, "solo", 0), m("/n_set", 10, "mute", 1)]),
        (2.1, [m("/n_set", 10, "mute", 0), m("/s_new", "player", 105, 4, 100, "buf", 2, "loop", 1, "gain", 0.4, "start", 12000)]),
        (2.2, [m("/s_new", "player", 106, 1, 10, "buf", 1, "loop", 1, "startWith", 107, "stopWith", 107, "gain", 0.3),
               m("/s_new", "player", 107, 1, 10, "buf", 3, "loop", 0, "rate", 1.5, "gain", 0.3)]),
        (2.6, [m("/n_set", 112, "bypass", 1), m("/n_set", 113, "room", 0.9), m("/n_free", 103)]),
        (3.0, [m("/g_freeAll", 21), m("/n_set", 114, "gainDb", -9.0)]),
        (3.4, [m("/g_deepFree", 0)]),
        (4.0, [m("/sync", 1)]),
    ], True)

    # The looper, recording the nrt input: record, overdub with feedback, multiply, undo, redo,
    # reverse, rate, mute, trigger, a pitch shift (the R2 shifter) and a second loop.
    s["looper"] = ([
        (0.0, [m("/loop_add", 2, 10.0), m("/loop_add", 2, 10.0), m("/s_new", "input", 50, 1, 0, "gain", 0.0)]),
        (0.25, [m("/sl/0/hit", "record")]),
        (1.25, [m("/sl/0/hit", "record")]),
        (1.5, [m("/sl/0/set", "feedback", 0.7), m("/sl/0/hit", "overdub")]),
        (2.0, [m("/sl/0/hit", "overdub")]),
        (2.25, [m("/sl/0/hit", "multiply")]),
        (3.0, [m("/sl/0/hit", "multiply")]),
        (3.5, [m("/sl/0/hit", "undo")]),
        (3.7, [m("/sl/0/hit", "redo"), m("/sl/1/hit", "record")]),
        (4.2, [m("/sl/1/hit", "record"), m("/sl/0/hit", "reverse")]),
        (4.8, [m("/sl/0/set", "rate", 0.5), m("/sl/1/set", "pitch_shift", 5.0)]),
        (5.4, [m("/sl/0/hit", "mute"), m("/sl/1/set", "wet", 0.5)]),
        (5.8, [m("/sl/0/hit", "trigger")]),
        (6.5, [m("/sync", 1)]),
    ], True)

    # The Crowdstream namespace: decks, stems following the clock, crossfades, EQ knobs, a cue and
    # a group start, a fade, a stop, the movement controller, /reset and /schedule_c_at.
    s["crowdstream"] = ([
        (0.0, [m("/load_buffer", 100, p["drums"]), m("/load_buffer", 1100, p["pad"]), m("/load_buffer", 2100, p["sweep"])]),
        (0.05, [m("/reset"), m("/schedule_c_at", 2.0)]),
        (0.1, [m("/play_stem", 100, 1.0, 0.8, 1, 0.0), m("/play_stem", 1100, 1.0, 0.6, 1, 0.25), m("/crossfade_levels", 1.0, 0.3)]),
        (0.6, [m("/deck_eq", "A", "low", 10.0), m("/deck_filter", "B", "high", 0.2), m("/set_tempo", 128.0)]),
        (1.0, [m("/crossfade_levels", 0.5, 1.0), m("/dance/total_movement", 40.0), m("/deck_eq_all", "A", 50.0, 30.0, 80.0)]),
        (1.5, [m("/stem_volume", 1100, 0.9), m("/deck_levels", 1.0, 1.0, 0.7, 1.0)]),
        (2.5, [m("/fade", "A", 0.0, 1.0), m("/cue", "D", p["drums"], 0.5)]),
        (3.0, [m("/start_group", 0.25, "D"), m("/stop_stem", 1100)]),
        (3.6, [m("/dance/total_movement", 0.0), m("/mixer_cleanup")]),
        (4.0, [m("/sync", 1)]),
    ], False)

    # The stretch engines following the clock through a ramp and a step, a pitch shift, a one-shot.
    s["stretch"] = ([
        (0.0, [m("/b_allocRead", 1, p["drums"]), m("/b_allocRead", 2, p["pad"])]),
        (0.1, [m("/set_tempo", 120.0),
               m("/s_new", "player", 100, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0, "stretch", "rb2", "gain", 0.4),
               m("/s_new", "player", 101, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0, "stretch", "rb3", "gain", 0.4, "pan", -0.5),
               m("/s_new", "player", 102, 0, 0, "buf", 2, "loop", 1, "follow", 1, "bpm", 120.0, "stretch", "wsola", "gain", 0.3, "pan", 0.5),
               m("/s_new", "player", 103, 0, 0, "buf", 2, "loop", 0, "follow", 1, "bpm", 120.0, "stretch", "rb3", "pitch", 3.0, "gain", 0.3),
               m("/s_new", "player", 104, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0, "gain", 0.3)]),
        (1.0, [m("/tempo", 96.0, 1.5)]),
        (2.8, [m("/set_tempo", 132.0), m("/n_set", 101, "pitch", -2.0)]),
        (3.5, [m("/n_free", 100, 102)]),
        (4.0, [m("/sync", 1)]),
    ], False)
    return s
