"""End-to-end: tempo-following stretched players on the real binary, driven the way a sequencer
drives it (python3-liblo, timetagged bundles), judged from the server's own recording: by the
sample positions of the clicks, and by `aubio onset` as an outside judge.

A bundle at T0 resets the clock's beat position, sets 140 BPM and starts the recording, so that
the recording's first frame is beat 0; a bundle at T0 + 4 beats (the second bar) starts a click
track recorded at 120 BPM as a follower; a bundle at T0 + 3 s ramps the tempo to 110 over 2 s.
Every click must land on its beat: the first on the bar, the rest on the /beat sample times the
server reports. The null-driver class always runs; the JACK class needs `jackd -d dummy`
(scripts/test starts it and sets LOOPD_JACK=1).
"""
import math
import os
import subprocess
import tempfile
import time
import unittest

import liblo

import oscutil
from test_osc import LOOPD, Loopd, write_wav16

RATE = 48000


def sanitized():
    """A server built with ASan/UBSan/TSan runs several times slower: the stretch threads fall
    behind (covered by varispeed), so its timing is not the release build's. There the tests run
    the same score for races and memory errors, and time it loosely."""
    out = subprocess.run(["ldd", LOOPD], capture_output=True, text=True).stdout
    return any(s in out for s in ("libasan", "libtsan", "libubsan"))


def click_track(beats, bpm=120.0):
    period = int(RATE * 60.0 / bpm)
    x = [0.0] * (period * beats)
    for b in range(beats):
        for k in range(480):  # a 10 ms decaying burst (aubio does not hear 1 ms clicks)
            x[b * period + k] = 0.8 * math.sin(k * 0.9) * math.exp(-k / 150.0)
    return x


def onsets(samples, threshold=0.2, gap=4800):
    """First sample above the threshold after at least `gap` quiet samples: one per click."""
    found, last = [], -gap
    for i, v in enumerate(samples):
        if abs(v) > threshold:
            if i - last >= gap:
                found.append(i)
            last = i
    return found


class StretchBase(unittest.TestCase):
    driver = "null"
    method = "rb3"
    tolerance_ms = 2.0   # targets: rate and rb3 within 2 ms, rb2 and wsola within 8 ms

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.srv = Loopd("--root", self.dir.name, "--stretch-threads", "2", "--buffer-size", "256", driver=self.driver)

    def tearDown(self):
        self.srv.stop()
        self.dir.cleanup()

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def run_score(self, method):
        srv = self.srv
        write_wav16(self.path("clicks.wav"), [click_track(16), click_track(16)])
        srv.request("/notify", 1)
        srv.request("/b_allocRead", 1, self.path("clicks.wav"))
        beat = 60.0 / 140.0
        t0 = liblo.time() + 0.8  # ahead enough for a slow (sanitizer) build to schedule it
        send = lambda t, *msgs: srv.client.send(srv.addr, liblo.Bundle(t, *[liblo.Message(*m) for m in msgs]))
        send(t0, ("/set_tempo", 140.0), ("/reset",), ("/rec_start", self.path("rec.wav")))
        send(t0 + 4 * beat, ("/s_new", "player", 5, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0,
                             "fade", 0.0, "stretch", method))
        send(t0 + 3.0, ("/tempo", 110.0, 2.0))
        time.sleep(max(0.0, t0 + 7.0 - liblo.time()))
        srv.request("/rec_stop", reply="/done", first="/rec_stop")
        self.assertEqual([a for p, a in srv.replies if p == "/fail"], [])
        self.assertEqual([a for p, a in srv.replies if p == "/late"], [], "the bundles were on time")
        # Beat sample times (beat 1 is the first after the reset), and the player's start.
        go = [a for p, a in srv.replies if p == "/n_go" and a[0] == 5]
        self.assertEqual(len(go), 1)
        # /beat bar beat bpm sampleTime; the reset starts again at bar 1 beat 2 (beat 1).
        reports = [a for p, a in srv.replies if p == "/beat"]
        first = max(i for i, a in enumerate(reports) if (a[0], a[1]) == (1, 2) and a[3] < go[0][5])
        beats = [a[3] for a in reports[first:]]
        status = srv.status()
        return beats, go[0], status

    def check_on_the_beats(self, method, tolerance_ms):
        slow = sanitized()
        if slow:
            tolerance_ms = 40.0
        beats, go, status = self.run_score(method)
        _, _, frames, _ = oscutil.read_wav(self.path("rec.wav"))
        left = [f[0] for f in frames]
        clicks = onsets(left)
        # Frame 0 of the recording is beat 0 (the same bundle): beat k is at beats[k-1] - origin.
        origin = beats[0] - round(RATE * 60.0 / 140.0)
        # (Each bundle's timetag is mapped to a sample on its own: a few samples apart at most.)
        self.assertLess(abs(go[5] - origin - 4 * RATE * 60.0 / 140.0), 48, "the player began on the bar's sample")
        due = [b - origin for b in beats[3:] if b - origin < len(left) - 2400]  # beat 4 on
        self.assertGreaterEqual(len(clicks), 10, clicks)
        errors = [(c - d) / 48.0 for c, d in zip(clicks, due)]
        print("%s on %s: first click %+.2f ms from the bar, worst %.2f ms over %d beats; stretch underruns %d"
              % (method, self.driver, errors[0], max(abs(e) for e in errors), len(errors), status[21]))
        self.assertLess(abs(errors[0]), tolerance_ms, "the first click on the bar it was scheduled for")
        self.assertLess(max(abs(e) for e in errors), tolerance_ms, errors)
        self.assertEqual(len(clicks), len(due), (clicks, due))
        if not slow:
            self.assertEqual(status[21], 0, "no stretch underrun")
        # The outside judge: aubio's onsets (hop 64, spectral difference: its default HFC heard
        # R3's low pre-echo 10 ms before one click). aubio reports a click about 2 ms late (its own
        # analysis delay: 60-130 samples on this material), so the comparison is after its median
        # offset; every click must be heard within the tolerance + 1 ms.
        out = subprocess.run(["aubio", "onset", "-i", self.path("rec.wav"), "-H", "64", "-B", "512", "-m", "specdiff", "-T", "samples"],
                             capture_output=True, text=True, check=True).stdout.split()
        heard = [float(t) for t in out]
        nearest = [min(heard, key=lambda h: abs(h - d)) - d for d in due]
        offset = sorted(nearest)[len(nearest) // 2]
        spread = max(abs(n - offset) for n in nearest) / 48.0
        print("aubio: %d onsets, %d clicks due; offset %.2f ms, worst %.2f ms around it" % (len(heard), len(due), offset / 48.0, spread))
        self.assertLess(abs(offset) / 48.0, 5.0 if not slow else tolerance_ms, "aubio's delay (and the engine's mean offset) is 1.5-4 ms here")
        self.assertLess(spread, tolerance_ms + 1.0)


class NullDriver(StretchBase):
    def test_rb3_follower_starts_on_its_bar_and_stays_on_the_beats_through_a_ramp(self):
        self.check_on_the_beats("rb3", 2.0)

    def test_rb2_and_wsola_followers_within_8_ms(self):
        for method in ("rb2", "wsola"):
            self.tearDown()
            self.setUp()
            self.check_on_the_beats(method, 8.0)


class Offline(unittest.TestCase):
    def test_nrt_score_with_stretched_followers_gives_the_same_bits_every_run(self):
        # Offline renders stay deterministic (the worker path runs synchronously in nrt).
        with tempfile.TemporaryDirectory() as d:
            wav = os.path.join(d, "clicks.wav")
            write_wav16(wav, [click_track(8), click_track(8)])
            score = os.path.join(d, "score.osc")
            oscutil.write_score(score, [
                (0.0, [oscutil.message("/b_allocRead", 1, wav)]),
                (0.1, [oscutil.message("/set_tempo", 140.0)] +
                      [oscutil.message("/s_new", "player", 100 + i, 0, 0, "buf", 1, "loop", 1, "follow", 1, "bpm", 120.0,
                                       "stretch", m, "pitch", 0.0 if i < 3 else 3.0, "gain", 0.3, "fade", 0.0)
                       for i, m in enumerate(("rb2", "rb3", "wsola", "rb3"))]),
                (1.0, [oscutil.message("/tempo", 100.0, 1.0)]),
                (2.3, [oscutil.message("/set_tempo", 128.0)]),
                (3.0, [oscutil.message("/sync", 1)]),
            ])
            outs = oscutil.render_nrt_twice(LOOPD, score, d)
            self.assertEqual(outs[0], outs[1], "two renders of one score differ")
            _, _, frames, _ = oscutil.read_wav(os.path.join(d, "out0.wav"))
            self.assertEqual(len(frames), 3 * RATE)
            # It is the stretched followers that sound: clicks at 140 BPM from 0.1 s (the first
            # within 2 ms; the spacing within 3.5 ms: the onset is the earliest of the four
            # players' clicks, and SoundTouch's own click spacing error through a stretch is up to
            # 3.24 ms, see test_stretch's "worst spacing error"; here its second click comes 155
            # frames early).
            clicks = onsets([f[0] for f in frames[:RATE]], threshold=0.1)
            self.assertAlmostEqual(clicks[0], 0.1 * RATE, delta=96)
            self.assertAlmostEqual(clicks[1] - clicks[0], RATE * 60.0 / 140.0, delta=0.0035 * RATE)


@unittest.skipUnless(os.environ.get("LOOPD_JACK"), "needs a JACK server (scripts/test starts jackd -d dummy)")
class Jack(StretchBase):
    driver = "jack"

    def test_rb3_follower_starts_on_its_bar_and_stays_on_the_beats_through_a_ramp(self):
        self.assertTrue(any("driver jack" in l for l in self.srv.log), self.srv.log)
        self.check_on_the_beats("rb3", 2.0)


if __name__ == "__main__":
    unittest.main()
