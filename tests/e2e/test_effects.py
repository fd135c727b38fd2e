"""End-to-end: every effect parameter driven over OSC (UDP, named values as strings, the way
Pd/Max/Python clients send them) on the real binary, and /fail for unknown parameters and
out-of-range values; the server keeps running.
"""
import os
import tempfile
import time
import unittest

import oscutil
from test_osc import Loopd, tone, write_wav16

EFFECTS = {
    "filter": [("mode", "lp"), ("mode", "hp"), ("mode", "bp"), ("cutoffHz", 800.0), ("q", 4.0),
               ("lfoRateHz", 2.0), ("lfoBeats", 1.0), ("lfoDepthOctaves", 2.0), ("lfoShape", "triangle"),
               ("lfoShape", "square"), ("lfoShape", "saw"), ("lfoShape", "sine"), ("bypass", 1), ("bypass", 0)],
    "delay": [("delaySeconds", 0.3), ("delayBeats", 0.75), ("feedback", 0.6), ("mix", 0.4), ("pingpong", 1), ("bypass", 1)],
    "reverb": [("room", 0.8), ("damping", 0.2), ("mix", 0.3), ("bypass", 0)],
    "stutter": [("division", 8), ("engage", 1), ("engage", 0)],
    "limiter": [("ceilingDb", -3.0)],
    "gain": [("gainDb", -6.0)],
    "eq3": [("low", 0.0), ("mid", 1.0), ("high", 0.5)],
}

BAD = [
    (("/s_new", "filter", 50, 0, 0, "room", 0.5), "filter has no parameter 'room'"),
    (("/s_new", "filter", 51, 0, 0, "cutoffHz", 99999.0), "out of range for 'cutoffHz'"),
    (("/s_new", "filter", 52, 0, 0, "mode", "notch"), "'notch' is not a value of 'mode'"),
    (("/s_new", "filter", 53, 0, 0, "lfoShape", "wobble"), "is not a value of 'lfoShape'"),
    (("/s_new", "delay", 54, 0, 0, "feedback", 2.0), "out of range for 'feedback'"),
    (("/s_new", "delay", 55, 0, 0, "delaySeconds", 100.0), "out of range for 'delaySeconds'"),
    (("/s_new", "reverb", 56, 0, 0, "room", -1.0), "out of range for 'room'"),
    (("/s_new", "stutter", 57, 0, 0, "division", 0), "out of range for 'division'"),
    (("/s_new", "gain", 58, 0, 0, "gainDb", 60.0), "out of range for 'gainDb'"),
    (("/s_new", "limiter", 59, 0, 0, "ceilingDb", 3.0), "out of range for 'ceilingDb'"),
    (("/s_new", "flanger", 60, 0, 0), "unknown node type 'flanger'"),
    (("/n_set", 11, "nope", 1.0), "unknown parameter 'nope'"),
    (("/n_ramp", 11, "mode", 1.0, 1.0), "cannot be ramped"),
]


class EffectsOverOsc(unittest.TestCase):
    def test_every_parameter_and_every_refusal(self):
        with tempfile.TemporaryDirectory() as d:
            srv = Loopd("--root", d, "--outputs", "4", "--cue-out", "2")
            try:
                wav = os.path.join(d, "t.wav")
                write_wav16(wav, [tone(220, 1.0), tone(330, 1.0)])
                srv.request("/b_allocRead", 1, wav)
                srv.send("/g_new", 10, 1, 0)
                srv.send("/s_new", "player", 100, 0, 10, "buf", 1, "loop", 1)
                node = 11
                for effect, params in EFFECTS.items():
                    srv.send("/s_new", effect, node, 1, 10)
                    for name, value in params:
                        srv.send("/n_set", node, name, value)
                    node += 1
                srv.send("/n_ramp", 11, "cutoffHz", 4000.0, 0.5)
                srv.send("/n_ramp", 12, "mix", 0.1, 0.5)
                srv.send("/n_set", 10, "cue", 1, "cueGain", 0.5, "out", 0)
                srv.send("/n_set", 100, "outMask", 3)
                time.sleep(0.3)
                self.assertEqual([a for p, a in srv.replies if p == "/fail"], [])
                tree = srv.request("/g_queryTree", 10, reply="/g_queryTree.reply")
                self.assertEqual(tree[1:3], [10, 1 + len(EFFECTS)])
                for msg, why in BAD:
                    reason = srv.fail(*msg)
                    self.assertIn(why, reason, msg)
                self.assertIn("out of range for 'division'", srv.fail("/n_set", 14, "division", 100.0))
                self.assertIn("effect 13 has no parameter 'cutoffHz'", srv.fail("/n_set", 13, "cutoffHz", 100.0))
                st = srv.status()
                self.assertEqual(st[0], 1)
                self.assertEqual(st[2], 1 + len(EFFECTS))
            finally:
                srv.stop()


if __name__ == "__main__":
    unittest.main()
