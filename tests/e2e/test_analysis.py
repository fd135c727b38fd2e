"""The analysis end to end, judged from outside: an offline render (`loopd --nrt score in out`)
whose input is a 123 BPM drum loop and whose clock follows it (`/tempo_source analysis 1`); a
click loop following the clock is heard by `aubio onset` (aubio-tools) at the loop's tempo and
on its beats. The render is deterministic: two runs give the same bytes."""
import math
import os
import random
import subprocess
import tempfile
import unittest

import oscutil
from test_osc import LOOPD, Loopd, write_wav16
from test_stretch import click_track

RATE = 48000


def drum_loop(bpm, seconds, seed=1):
    """Kick (a falling sine) on every beat, a noise snare on 2 and 4, noise hats on the eighths."""
    rnd = random.Random(seed)
    x = [0.0] * int(seconds * RATE)
    beat = 60.0 / bpm * RATE
    e = 0
    while e * beat / 2 < len(x):
        at = int(round(e * beat / 2))
        for k in range(min(2400, len(x) - at)):
            x[at + k] += 0.15 * rnd.uniform(-1, 1) * math.exp(-k / 400.0)
        if e % 2 == 0:
            for k in range(min(12000, len(x) - at)):
                t = k / RATE
                x[at + k] += 0.6 * math.sin(2 * math.pi * (50 + 100 * math.exp(-t * 30)) * t) * math.exp(-t * 12)
        if e % 4 == 2:
            for k in range(min(9600, len(x) - at)):
                x[at + k] += 0.35 * rnd.uniform(-1, 1) * math.exp(-k / 1000.0)
        e += 1
    return x


def aubio_onsets(path):
    out = subprocess.run(["aubio", "onset", "-i", path, "-H", "64", "-B", "512", "-m", "specdiff", "-T", "samples"],
                         capture_output=True, text=True, check=True).stdout.split()
    return [float(t) for t in out]


class TempoFromTheInput(unittest.TestCase):
    def test_the_clock_follows_a_drum_loop_and_a_follower_plays_on_its_beats(self):
        bpm, seconds = 123.0, 36.0  # the first estimate at 8 s, the glide (8 s) and the phase slide (2 % pace: up to 12 s)
        with tempfile.TemporaryDirectory() as d:
            inp, click = os.path.join(d, "in.wav"), os.path.join(d, "click.wav")
            loop = drum_loop(bpm, seconds)
            write_wav16(inp, [loop, loop])
            write_wav16(click, [click_track(4, 120.0)])
            score = os.path.join(d, "score.osc")
            oscutil.write_score(score, [
                (0.0, [oscutil.message("/b_allocRead", 1, click),
                       oscutil.message("/tempo_source", "analysis", 1),
                       oscutil.message("/s_new", "player", 100, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0)]),
                (seconds, [oscutil.message("/sync", 1)]),
            ])
            outs = []
            for run in range(2):
                out = os.path.join(d, "out%d.wav" % run)
                r = subprocess.run([LOOPD, "--nrt", score, inp, out], capture_output=True, text=True, timeout=300)
                self.assertEqual(r.returncode, 0, r.stderr[-2000:])
                outs.append(out)
            with open(outs[0], "rb") as a, open(outs[1], "rb") as b:
                self.assertEqual(a.read(), b.read(), "two renders of the same score and input differ")
            # aubio hears the follower's clicks: in the last 6 s at the loop's tempo ...
            heard = [t for t in aubio_onsets(outs[0]) if t >= (seconds - 6.0) * RATE]
            gaps = sorted(b - a for a, b in zip(heard, heard[1:]))
            self.assertGreater(len(gaps), 8, heard)
            median = gaps[len(gaps) // 2]
            want = 60.0 / bpm * RATE
            # ... and on the loop's beats (aubio's own delay is about the same on both files).
            beats = aubio_onsets(inp)
            offs = [min(beats, key=lambda b: abs(b - h)) - h for h in heard]
            offs.sort()
            print("aubio: the follower's clicks %.1f samples apart (the loop's beat: %.1f), %.2f ms (median) from the loop's hits, worst %.2f ms"
                  % (median, want, -offs[len(offs) // 2] / 48.0, max(abs(o) for o in offs) / 48.0))
            self.assertLess(abs(median - want), 0.002 * want)
            self.assertLess(abs(offs[len(offs) // 2]) / 48.0, 5.0)
            self.assertLess(max(abs(o) for o in offs) / 48.0, 10.0)


class BufferAnalysisOverUdp(unittest.TestCase):
    """/b_analyze on the real-time server: the copy on the worker, the analysis on its own thread,
    the reply through the control thread (the sanitizer builds run this too)."""

    def test_b_analyze_b_beats_and_an_analysed_follower(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "loop.wav")
            loop = drum_loop(123.0, 12.0, seed=4)
            write_wav16(path, [loop, loop])
            srv = Loopd()
            try:
                srv.request("/b_allocRead", 1, path)
                srv.send("/b_analyze", 1)
                a = srv.wait("/b_analysis", 1, timeout=60)
                print("/b_analysis", a)
                self.assertAlmostEqual(a[1], 123.0, delta=0.5)
                self.assertGreater(a[2], 0.5)
                beats = srv.request("/b_beats", 1, reply="/b_beats.reply", first=1)
                self.assertGreater(len(beats), 20)
                srv.send("/s_new", "player", 100, 0, 0, "buf", 1, "loop", 1, "bpm", -1, "follow", 1, "align", 1)
                self.assertEqual(srv.request("/s_get", 100, "bpm", "align", reply="/n_set", first=100), [100, "bpm", -1.0, "align", 1.0])
                self.assertIn("not loaded", srv.fail("/b_analyze", 5))
                self.assertIn("needs 3 s", (srv.request("/b_alloc", 2, 48000), srv.fail("/b_analyze", 2))[1])
            finally:
                srv.stop()


if __name__ == "__main__":
    unittest.main()
