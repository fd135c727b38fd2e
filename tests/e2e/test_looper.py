"""End-to-end: the looper through SooperLooper's OSC namespace, against the real binary, the way
its users drive it: python3-liblo with return URLs (as slgui and SooperLooper's Python clients
do), and a Pd patch ([oscformat] -> [netsend -u -b], floats only, as Pd sends them).

The null-driver class always runs. The JACK class needs `jackd -d dummy` (scripts/test starts
it and sets LOOPD_JACK=1): there loopd's outputs are patched into its own inputs with
jack_connect, so the looper records real audio that a player plays.
"""
import math
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import liblo

import oscutil
from test_osc import Loopd, tone, write_wav16

# SooperLooper's state numbers (doc_osc.html).
OFF, WAIT_START, RECORDING, WAIT_STOP, PLAYING, OVERDUBBING, MUTED = 0, 1, 2, 3, 4, 5, 10


class Looper:
    """A SooperLooper-style client: gets answer at its own URL."""

    def __init__(self, srv):
        self.srv = srv
        self.url = "osc.udp://127.0.0.1:%d/" % srv.client.port

    def get(self, loop, ctrl):
        path = "/r_%s_%d" % (ctrl, time.monotonic_ns())
        self.srv.send("/sl/%d/get" % loop, ctrl, self.url, path)
        a = self.srv.wait(path)
        assert a[0] == loop and a[1] == ctrl, a
        return a[2]

    def hit_at(self, t, loop, cmd):
        """A timetagged bundle, as a sequencer sends it."""
        self.srv.client.send(self.srv.addr, liblo.Bundle(t, liblo.Message("/sl/%d/hit" % loop, cmd)))

    def record_one_second(self, test, loop=0):
        """A timetagged 1 s recording (0.6 s ahead, for slow sanitizer builds); checks the states
        on the way and the length (each timetag maps to its own sample: ±1 sample)."""
        t0 = liblo.time() + 0.6
        self.hit_at(t0, loop, "record")
        self.hit_at(t0 + 1.0, loop, "record")
        time.sleep(0.8)
        test.assertEqual(self.get(loop, "state"), RECORDING)
        self.wait_state(loop, PLAYING)
        test.assertAlmostEqual(self.get(loop, "loop_len"), 1.0, delta=1.5 / 48000)

    def wait_state(self, loop, state, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.get(loop, "state")
            if s == state:
                return
            time.sleep(0.05)
        raise AssertionError("loop %d never reached state %d (last %s)" % (loop, state, s))


def saved_loop(srv, loop, path):
    srv.send("/sl/%d/save_loop" % loop, path, "float", "little", "osc.udp://127.0.0.1:%d/" % srv.client.port, "/err")
    a = srv.wait("/done", "/sl/%d/save_loop" % loop, timeout=10)
    assert a[2] == path
    rate, ch, frames, _ = oscutil.read_wav(path)
    return rate, ch, frames


class NullDriver(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.srv = Loopd("--root", self.dir.name, loops=1)
        self.sl = Looper(self.srv)

    def tearDown(self):
        self.srv.stop()
        self.dir.cleanup()

    def test_ping_and_gets_answer_as_sooperlooper_documents(self):
        self.srv.send("/ping", self.sl.url, "/pong")
        host, version, loops = self.srv.wait("/pong")
        self.assertTrue(host.startswith("osc.udp://"), host)
        self.assertEqual(loops, 1)
        self.srv.send("/loop_add", 1, 10.0)
        self.srv.wait("/done", "/loop_add")
        self.srv.send("/ping", self.sl.url, "/pong")
        self.assertEqual(self.srv.wait("/pong")[2], 2)
        self.assertEqual(self.sl.get(0, "state"), OFF)
        self.assertEqual(self.sl.get(1, "feedback"), 1.0)
        self.srv.send("/sl/1/set", "feedback", 0.5)
        self.assertEqual(self.sl.get(1, "feedback"), 0.5)
        self.srv.send("/get", "tempo", self.sl.url, "/t")
        self.assertEqual(self.srv.wait("/t"), [-2, "tempo", 120.0])

    def test_timetagged_recording_is_exactly_one_second(self):
        self.sl.record_one_second(self)
        self.srv.send("/sl/0/hit", "mute")
        self.sl.wait_state(0, MUTED)
        self.srv.send("/sl/0/hit", "mute")
        self.sl.wait_state(0, PLAYING)
        self.srv.send("/sl/0/hit", "undo")
        self.sl.wait_state(0, OFF)
        self.assertEqual(self.sl.get(0, "loop_len"), 0.0)
        self.srv.send("/sl/0/hit", "redo")
        self.sl.wait_state(0, PLAYING)
        self.assertAlmostEqual(self.sl.get(0, "loop_len"), 1.0, delta=1.5 / 48000)

    def test_bad_input_fails_and_keeps_the_loop(self):
        t0 = liblo.time() + 0.6
        self.sl.hit_at(t0, 0, "record")
        self.sl.hit_at(t0 + 0.5, 0, "record")
        self.sl.wait_state(0, PLAYING)
        self.assertIn("out of range", self.srv.fail("/sl/4/hit", "record", command="/sl/4/hit"))
        self.assertIn("unknown looper command", self.srv.fail("/sl/0/hit", "explode", command="/sl/0/hit"))
        self.assertIn("unknown looper control", self.srv.fail("/sl/0/set", "wobble", 1.0, command="/sl/0/set"))
        missing = os.path.join(self.dir.name, "missing.wav")
        self.srv.send("/sl/0/load_loop", missing, self.sl.url, "/loaderr")
        self.assertIn("missing.wav", self.srv.wait("/loaderr")[1])  # SooperLooper's: engine URL, message
        self.srv.wait("/fail", "/sl/0/load_loop")
        outside = "/etc/passwd.wav"
        self.srv.send("/sl/0/load_loop", outside, self.sl.url, "/loaderr")
        self.srv.wait("/loaderr")
        self.assertEqual(self.sl.get(0, "state"), PLAYING)
        # (Two timetags are mapped in different blocks while the clock slews: within a sample.)
        self.assertAlmostEqual(self.sl.get(0, "loop_len"), 0.5, delta=1.5 / 48000)


class Offline(unittest.TestCase):
    def test_nrt_score_records_the_input_file(self):
        """`loopd --nrt score.osc in.wav out.wav`: the looper records the input file, exactly."""
        with tempfile.TemporaryDirectory() as d:
            src = [0.3 * math.sin(2 * math.pi * 440 * i / 48000) for i in range(4 * 48000)]
            write_wav16(os.path.join(d, "in.wav"), [src, src])
            loop = os.path.join(d, "loop.wav")
            oscutil.write_score(os.path.join(d, "s.osc"), [
                (0.0, [oscutil.message("/loop_add", 2, 10.0)]),
                (0.5, [oscutil.message("/sl/0/hit", "record")]),
                (1.5, [oscutil.message("/sl/0/hit", "record")]),
                (2.0, [oscutil.message("/sl/0/save_loop", loop, "float", "little", "osc.udp://127.0.0.1:9/", "/err")]),
                (3.0, [oscutil.message("/sync", 1)]),
            ])
            r = subprocess.run([os.environ.get("LOOPD_BIN", "../../build/server/loopd"), "--nrt", os.path.join(d, "s.osc"),
                                os.path.join(d, "in.wav"), os.path.join(d, "out.wav")], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("0 failed commands", r.stderr)
            rate, ch, frames, _ = oscutil.read_wav(loop)
            self.assertEqual((rate, ch, len(frames)), (48000, 2, 48000))
            _, _, inp, _ = oscutil.read_wav(os.path.join(d, "in.wav"))
            # Frame k of the loop is input frame 24000 + k (the last 256 crossfade into the
            # input before the start, so that the loop wraps without a click).
            for k in range(0, 48000 - 256, 97):
                self.assertAlmostEqual(frames[k][0], inp[24000 + k][0], places=6)


PD_PATCH = """#N canvas 0 0 600 500 12;
#X obj 20 20 loadbang;
#X msg 20 50 connect 127.0.0.1 {port};
#X obj 20 400 netsend -u -b;
#X obj 260 20 loadbang;
#X obj 260 50 delay 300;
#X msg 260 80 set sl 0 hit \\, list record;
#X obj 260 300 oscformat;
#X obj 260 330 list prepend send;
#X obj 260 360 list trim;
#X obj 400 50 delay 1300;
#X msg 400 80 set sl 0 hit \\, list record;
#X obj 400 110 delay 1600;
#X msg 400 140 set sl 0 set \\, list feedback 0.5;
#X msg 400 170 set sl 0 hit \\, list overdub;
#X obj 400 200 delay 500;
#X msg 400 230 set sl 0 hit \\, list overdub;
#X obj 20 200 delay 3800;
#X msg 20 230 \\; pd quit;
#X connect 0 0 1 0;
#X connect 1 0 2 0;
#X connect 3 0 4 0;
#X connect 3 0 9 0;
#X connect 3 0 16 0;
#X connect 4 0 5 0;
#X connect 5 0 6 0;
#X connect 6 0 7 0;
#X connect 7 0 8 0;
#X connect 8 0 2 0;
#X connect 9 0 10 0;
#X connect 9 0 11 0;
#X connect 10 0 6 0;
#X connect 11 0 12 0;
#X connect 11 0 13 0;
#X connect 11 0 14 0;
#X connect 12 0 6 0;
#X connect 13 0 6 0;
#X connect 14 0 15 0;
#X connect 15 0 6 0;
#X connect 16 0 17 0;
"""


def run_pd_patch(port, directory):
    """Pd records for 1 s (t = 0.3 .. 1.3 s), sets feedback 0.5, overdubs 0.5 s, quits."""
    patch = os.path.join(directory, "looper.pd")
    with open(patch, "w") as f:
        f.write(PD_PATCH.format(port=port))
    # Options before the patch; -nosound keeps Pd's clock in real time (no -batch: the delays are
    # the performance).
    return subprocess.run(["pd", "-nogui", "-nosound", "-noprefs", patch], capture_output=True, text=True, timeout=30)


class JackBase(unittest.TestCase):
    driver = "jack"

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.srv = Loopd("--root", self.dir.name, "--buffer-size", "256", driver=self.driver, loops=1)
        self.sl = Looper(self.srv)

    def tearDown(self):
        self.srv.stop()
        self.dir.cleanup()


@unittest.skipUnless(os.environ.get("LOOPD_JACK"), "needs a JACK server (scripts/test starts jackd -d dummy)")
class Jack(JackBase):
    def test_python_client_records_what_a_player_plays_through_a_jack_loopback(self):
        self.assertTrue(any("driver jack" in l for l in self.srv.log), self.srv.log)
        # loopd's outputs into its own inputs: the looper hears the player.
        for c in (0, 1):
            subprocess.run(["jack_connect", "loopd:outport %d" % c, "loopd:inport %d" % c], check=True)
        wav = os.path.join(self.dir.name, "src.wav")
        # 3 s of a 220 Hz tone with a 10 ms burst every 250 ms (something to align on).
        src = tone(220, 3.0, 0.3)
        for k in range(0, len(src), 12000):
            for i in range(k, min(k + 480, len(src))):
                src[i] += 0.5 * math.sin(2 * math.pi * 3000 * i / 48000)
        write_wav16(wav, [src, src])
        self.srv.request("/b_allocRead", 1, wav)
        self.srv.send("/s_new", "player", 100, 1, 0, "buf", 1, "loop", 1)
        time.sleep(0.5)
        self.sl.record_one_second(self)
        rate, ch, frames = saved_loop(self.srv, 0, os.path.join(self.dir.name, "loop.wav"))
        self.assertEqual((rate, ch), (48000, 2))
        self.assertLessEqual(abs(len(frames) - 48000), 1, (len(frames), os.path.getsize(os.path.join(self.dir.name, "loop.wav"))))
        left = [f[0] for f in frames]
        # The loop is the player's audio: its level, and its bursts 250 ms apart.
        rms = math.sqrt(sum(v * v for v in left) / len(left))
        self.assertGreater(rms, 0.15)
        loud = [i for i in range(1, len(left)) if abs(left[i]) > 0.6 and abs(left[i - 1]) <= 0.6]
        gaps = sorted({round((b - a) / 12000.0) for a, b in zip(loud, loud[1:]) if b - a > 2000})
        self.assertEqual(gaps, [1], loud[:20])
        self.srv.send("/n_free", 100)
        st = self.srv.status()
        print("jack looper: cpu avg %.1f%% peak %.1f%%, xruns %d" % (st[5], st[6], st[10]))

    @unittest.skipUnless(shutil.which("pd"), "needs Pd (puredata-core)")
    def test_pd_patch_drives_the_looper(self):
        r = run_pd_patch(self.srv.udp_port, self.dir.name)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Pd's delays set the lengths: 1.0 s recorded (Pd and OSC timing within a few blocks).
        self.assertAlmostEqual(self.sl.get(0, "loop_len"), 1.0, delta=0.03)
        self.assertEqual(self.sl.get(0, "state"), PLAYING)
        self.assertEqual(self.sl.get(0, "feedback"), 0.5)
        self.assertEqual(self.sl.get(0, "undo_depth"), 2)  # the recording and the overdub
        self.assertEqual([a for p, a in self.srv.replies if p == "/fail"], [])


@unittest.skipUnless(shutil.which("pd"), "needs Pd (puredata-core)")
class PdOnNullDriver(JackBase):
    """The same patch without JACK, so the Pd path is tested on every machine."""
    driver = "null"

    def test_pd_patch_drives_the_looper(self):
        Jack.test_pd_patch_drives_the_looper(self)


if __name__ == "__main__":
    unittest.main()
