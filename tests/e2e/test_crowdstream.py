"""End-to-end: a client replaying the Crowdstream playlist client's opening sequence against the
real binary on the null driver: /reset, /set_tempo, /deck_levels, /deck_eq_all, /cue, /start_group,
a 41-step crossfade of /deck_levels + /deck_eq_all, and movement values every 0.5 s; the output
is recorded with /rec_start and the recording is measured (levels, clicks, tempo reached).
"""
import json
import math
import os
import tempfile
import threading
import time
import unittest

import oscutil
from test_osc import Loopd, tone, write_wav16


def rms(frames, ch, a, b):
    return math.sqrt(sum(f[ch] ** 2 for f in frames[a:b]) / max(1, b - a))


def crossing_hz(frames, ch, a, b, rate=48000):
    first = last = None
    count = 0
    for i in range(a + 1, b):
        x0, x1 = frames[i - 1][ch], frames[i][ch]
        if x0 < 0 <= x1:
            t = i - 1 + x0 / (x0 - x1)
            if first is None:
                first = t
            else:
                count += 1
            last = t
    return count * rate / (last - first) if count else 0.0


class PlaylistClient(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        cfg = os.path.join(self.dir.name, "bpm.json")
        with open(cfg, "w") as f:
            # The original's file format, with a short transition so that the test sees it end.
            json.dump({"movement_bpm": {"movement_max_value": 0.6,
                                        "thresholds": {"very_very_low": 0.02, "very_low": 0.05, "low": 0.10, "medium": 0.10},
                                        "bpm_targets": {"very_very_low": 105.0, "very_low": 110.0, "low": 115.0,
                                                        "medium": 118.0, "high_max": 130.0},
                                        "smoothing": {"transition_time_seconds": 3.0}}}, f)
        self.srv = Loopd("--root", self.dir.name, "--bpm-config", cfg)

    def tearDown(self):
        self.srv.stop()
        self.dir.cleanup()

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def test_opening_sequence_crossfade_and_movement(self):
        srv = self.srv
        self.assertTrue(any("medium" in l and "0.15" in l for l in srv.log), "the unreachable medium step is reported")
        write_wav16(self.path("a.wav"), [tone(220, 4.0, 0.5), tone(220, 4.0, 0.5)])
        write_wav16(self.path("b.wav"), [tone(330, 4.0, 0.5), tone(330, 4.0, 0.5)])
        for m in [("/reset",), ("/set_tempo", 120.0), ("/deck_levels", 0.0, 0.0, 0.0, 0.0),
                  ("/deck_eq_all", "A", 50.0, 50.0, 50.0), ("/deck_eq_all", "B", 50.0, 50.0, 50.0)]:
            self.assertEqual(srv.request(*m)[0], m[0])
        srv.request("/rec_start", self.path("mix.wav"))
        srv.request("/cue", "A", self.path("a.wav"))
        srv.request("/cue", "B", self.path("b.wav"))
        srv.send("/start_group", 0.3, "A", "B")
        srv.request("/deck_levels", 1.0, 0.0, 0.0, 0.0)
        srv.wait("/done", "/start_group", timeout=3)

        stop = threading.Event()

        def movement():
            # The movement detector's stream: one value every 0.5 s.
            client = oscutil.TcpClient(srv.tcp_port)
            while not stop.is_set():
                client.send("/dance/total_movement", 0.6)
                stop.wait(0.5)
            client.close()

        mover = threading.Thread(target=movement)
        time.sleep(1.0)
        mover.start()
        # 41-step crossfade A -> B with EQ: the incoming deck's low comes in as the outgoing one's goes.
        for k in range(41):
            x = k / 40.0
            srv.send("/deck_levels", 1.0 - x, x)
            srv.send("/deck_eq_all", "A", 50.0 * (1.0 - x), 50.0, 50.0)
            srv.send("/deck_eq_all", "B", 50.0 * x, 50.0, 50.0)
            time.sleep(0.05)
        time.sleep(3.5)
        stop.set()
        mover.join()
        status = srv.status()
        srv.request("/rec_stop", reply="/done", first="/rec_stop")
        fails = [a for p, a in srv.replies if p == "/fail"]
        self.assertEqual(fails, [])
        self.assertAlmostEqual(status[13], 130.0, delta=0.5)   # the tempo got there

        rate, ch, frames, _ = oscutil.read_wav(self.path("mix.wav"))
        n = len(frames)
        self.assertGreater(n, 5 * rate)
        start = next(i for i, f in enumerate(frames) if f[0] != 0.0)
        # Deck A alone before the crossfade: 0.5 x stem volume 0.8 x stem master 0.8.
        a_rms = rms(frames, 0, start + rate // 4, start + rate // 2)
        self.assertAlmostEqual(a_rms, 0.5 * 0.8 * 0.8 / math.sqrt(2), delta=0.01)
        self.assertAlmostEqual(crossing_hz(frames, 0, start + rate // 4, start + rate // 2), 220.0, delta=1.0)
        # After: only deck B, at the followed tempo (varispeed: 330 Hz x 130/120).
        tail = (n - rate, n)
        self.assertAlmostEqual(rms(frames, 0, *tail), 0.5 * 0.8 * 0.8 / math.sqrt(2), delta=0.01)
        self.assertAlmostEqual(crossing_hz(frames, 0, *tail), 330.0 * 130.0 / 120.0, delta=2.0)
        # No clicks anywhere: no step larger than the loudest sine's own largest step (+ margin).
        own = 2 * math.pi * 360.0 / rate * 0.5 * 0.64
        worst = max(abs(frames[i][0] - frames[i - 1][0]) for i in range(1, n))
        self.assertLess(worst, own * 1.3)

    def test_start_group_waits_for_a_loading_deck_and_starts_both_on_one_sample(self):
        srv = self.srv
        # Deck A: 30 s at 44.1 kHz (resampled while loading: takes a while); deck B: short.
        write_wav16(self.path("big.wav"), [[0.3] * (44100 * 30), [0.0] * (44100 * 30)], rate=44100)
        write_wav16(self.path("small.wav"), [[0.0] * 4800, [0.3] * 4800])
        srv.request("/rec_start", self.path("sync.wav"))
        srv.send("/cue", "A", self.path("big.wav"))
        srv.send("/cue", "B", self.path("small.wav"))
        srv.send("/start_group", 0.0, "A", "B")   # due at once, while A still loads
        srv.wait("/done", "/start_group", timeout=6)
        time.sleep(0.3)
        srv.request("/rec_stop", reply="/done", first="/rec_stop")
        self.assertEqual([a for p, a in srv.replies if p == "/fail"], [])
        _, _, frames, _ = oscutil.read_wav(self.path("sync.wav"))
        left = next(i for i, f in enumerate(frames) if f[0] != 0.0)
        right = next(i for i, f in enumerate(frames) if f[1] != 0.0)
        self.assertEqual(left, right)

    def test_bad_arguments_answer_fail_and_keep_the_server(self):
        srv = self.srv
        cases = [
            (("/deck_eq", "Q", "low", 30.0), "unknown deck"),
            (("/deck_filter", "A", "sub", 1.0), "band out of range"),
            (("/deck_eq", "A", 5, 30.0), "band out of range"),
            (("/deck_levels", float("nan")), "not a finite number"),
            (("/crossfade_levels", 1.0, float("inf")), "not a finite number"),
            (("/cue", "A", self.path("missing.wav")), "file not found"),
            (("/play", "B", self.path("missing.wav"), 0.0), "file not found"),
            (("/load_buffer", 1100, self.path("missing.wav")), "file not found"),
            (("/play_stem", 1100), "not loaded"),
            (("/start_group", 0.0, "C"), "not cued"),
        ]
        for msg, why in cases:
            self.assertIn(why, srv.fail(*msg))
        self.assertEqual(srv.status()[0], 1)


if __name__ == "__main__":
    unittest.main()
