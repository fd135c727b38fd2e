"""Golden renders (golden.py): every score renders to the bits recorded in golden/renders.json.

Bits depend on the compiler's floating-point code, so the digests are those of the Release build
(scripts/test's first pass); other builds (the sanitizer passes) check that each score renders
the same bits twice instead.
"""
import hashlib
import json
import math
import os
import struct
import subprocess
import tempfile
import unittest

import golden
import oscutil
from test_osc import LOOPD

HERE = os.path.dirname(os.path.abspath(__file__))
DIGESTS = os.path.join(HERE, "golden", "renders.json")
RELEASE = os.environ.get("LOOPD_BUILD_TYPE", "Release") == "Release" and not os.environ.get("LOOPD_SANITIZE")


def render(score_path, input_path, out_path):
    r = subprocess.run([LOOPD, "--nrt", score_path, input_path or "_", out_path], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError("loopd --nrt failed (%d):\n%s" % (r.returncode, r.stderr))
    with open(out_path, "rb") as f:
        return f.read()


def describe(wav_path):
    """Frames and per-channel RMS in 0.5 s windows: enough to see where a render changed."""
    _, ch, frames, _ = oscutil.read_wav(wav_path)
    windows = []
    for start in range(0, len(frames), 24000):
        chunk = frames[start:start + 24000]
        windows.append([round(math.sqrt(sum(f[c] * f[c] for f in chunk) / len(chunk)), 6) for c in range(ch)])
    return {"frames": len(frames), "rms": windows}


class Golden(unittest.TestCase):
    def test_every_score_renders_the_recorded_bits(self):
        update = bool(os.environ.get("LOOPD_GOLDEN_UPDATE"))
        with open(DIGESTS) as f:
            recorded = json.load(f) if not update else {}
        found = {}
        with tempfile.TemporaryDirectory() as d:
            paths = golden.sources(d)
            for name, (bundles, uses_input) in sorted(golden.scores(paths).items()):
                score = os.path.join(d, name + ".osc")
                oscutil.write_score(score, bundles)
                out = os.path.join(d, name + ".wav")
                data = render(score, paths["input"] if uses_input else None, out)
                digest = hashlib.sha256(data).hexdigest()
                found[name] = dict(sha256=digest, **describe(out))
                print("\n%s: %d frames, sha256 %s" % (name, found[name]["frames"], digest[:16]))
                # Every render must have sound in it (a score that silently failed is no test).
                self.assertGreater(max(max(w) for w in found[name]["rms"]), 0.01, name)
                if not RELEASE:
                    again = render(score, paths["input"] if uses_input else None, out)
                    self.assertEqual(hashlib.sha256(again).hexdigest(), digest, name + ": two renders differ")
        if update:
            with open(DIGESTS, "w") as f:
                json.dump(found, f, indent=1, sort_keys=True)
                f.write("\n")
            self.skipTest("golden digests rewritten (%s)" % DIGESTS)
        if not RELEASE:
            self.skipTest("not a Release build: renders checked for repeatability only")
        self.assertEqual(sorted(found), sorted(recorded), "a score was added or removed: regenerate on purpose")
        for name in sorted(found):
            with self.subTest(score=name):
                want, got = recorded[name], found[name]
                if got["sha256"] != want["sha256"]:
                    moved = [(i * 0.5, w, g) for i, (w, g) in enumerate(zip(want["rms"], got["rms"])) if w != g]
                    self.fail("%s renders other bits than recorded: %d vs %d frames; first windows that moved "
                              "(seconds, recorded rms, now): %s" % (name, got["frames"], want["frames"], moved[:4]))


if __name__ == "__main__":
    unittest.main()
