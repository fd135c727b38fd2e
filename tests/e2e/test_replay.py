"""Session log and replay (issue 17, SPEC 4.10): a real-time loopd (null driver with its input
from a file, and JACK's dummy driver) keeps a session log while a python client plays a scene
over UDP and TCP (a file player started by a completion message, a timetagged bundle, a looper
recording and overdubbing the live input, a reverb, a tempo ramp, a rate change); its /rec_start
recording must equal the recording `loopd --replay` makes of the log, sample for sample, and sit
in the replay's output. A replay with rb3 keeps the pitch the varispeed one bends; one at 96 kHz
is the same performance; a log cut off (by truncation, by kill -9) replays up to the cut."""
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import unittest

import numpy as np

import oscutil
from test_osc import LOOPD, Loopd

RATE = 48000


def read(path):
    rate, ch, frames, _ = oscutil.read_wav(path)
    return rate, np.array(frames, dtype=np.float32).reshape(-1, ch)


def peak_hz(x, rate):
    w = x[:, 0] * np.hanning(len(x))
    spec = np.abs(np.fft.rfft(w))
    return np.argmax(spec) * rate / len(w)


def find_in(haystack, needle):
    """The offset where `needle` sits in `haystack` exactly (None: nowhere)."""
    nz = np.flatnonzero(np.any(needle != 0, axis=1))
    if len(nz) == 0:
        return None
    first = nz[0]
    for cand in np.flatnonzero(np.all(haystack == needle[first], axis=1)):
        off = cand - first
        if off >= 0 and off + len(needle) <= len(haystack) and np.array_equal(haystack[off:off + len(needle)], needle):
            return int(off)
    return None


def replay(args, timeout=120):
    r = subprocess.run([LOOPD, "--replay", *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stderr


def log_records(path):
    """(offset, type, sample) of every record of a session log (the format in SessionLog.h)."""
    data = open(path, "rb").read()
    n = struct.unpack_from("<I", data, 12)[0]
    pos = 16 + n
    out = []
    while pos + 5 <= len(data):
        t, ln = data[pos:pos + 1], struct.unpack_from("<I", data, pos + 1)[0]
        out.append((pos, t, struct.unpack_from("<q", data, pos + 5)[0]))
        pos += 5 + ln
    return out


class Replay(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="loopd-replay-")
        d = cls.dir
        # The input: clicks every half second over quiet noise (the looper records it).
        subprocess.run(["sox", "-n", "-r", str(RATE), "-c", "2", "-b", "16", d + "/noise.wav", "synth", "2", "pinknoise", "vol", "0.05"], check=True)
        subprocess.run(["sox", "-n", "-r", str(RATE), "-c", "2", "-b", "16", d + "/click.wav", "synth", "0.01", "sine", "1500", "vol", "0.6",
                        "pad", "0", "0.49"], check=True)
        subprocess.run(["sox", "-m", d + "/noise.wav", "|sox %s/click.wav -p repeat 3" % d, d + "/input.wav"], check=True)
        subprocess.run(["sox", "-n", "-r", str(RATE), "-c", "2", "-b", "16", d + "/tone.wav", "synth", "3", "sine", "440", "vol", "0.3"], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def play_scene(self, srv, rec_path, cut_short=False):
        """The performance. Returns after /rec_stop (or, cut_short, while it still runs)."""
        d = self.dir
        srv.request("/notify", 1)
        udp = oscutil.UdpClient(srv.udp_port)
        tcp = oscutil.TcpClient(srv.tcp_port)
        try:
            # A player started by /b_allocRead's completion message (scsynth's way).
            start = oscutil.message("/s_new", "player", 1000, 0, 0, "buf", 10, "loop", 1, "rate", 1.01, "gain", 0.5)
            udp.send("/b_allocRead", 10, d + "/tone.wav", 0, 0, start)
            deadline = time.time() + 10
            while time.time() < deadline:
                if udp.recv(10) == ("/done", ["/b_allocRead", 10]):
                    break
            srv.request("/rec_start", rec_path, reply="/done", first="/rec_start")
            srv.send("/s_new", "reverb", 2000, 1, 0, "mix", 0.2)
            time.sleep(0.4)
            srv.send("/sl/0/hit", "record")
            time.sleep(1.0)
            srv.send("/sl/0/hit", "record")
            time.sleep(0.5)
            # A timetagged bundle 0.3 s ahead (the live clock's mapping is in the log).
            tag = int((time.time() + 2208988800 + 0.3) * (1 << 32))
            udp.send_raw(oscutil.bundle(tag, oscutil.message("/n_set", 1000, "gain", 0.35)))
            time.sleep(0.3)
            srv.send("/sl/0/hit", "overdub")
            time.sleep(0.6)
            srv.send("/sl/0/hit", "overdub")
            if cut_short:
                return
            time.sleep(0.4)
            srv.send("/tempo", 130.0, 1.0)
            tcp.send("/n_set", 1000, "rate", 0.8)  # over TCP
            time.sleep(1.2)
            srv.request("/rec_stop", reply="/done", first="/rec_stop")
        finally:
            udp.close()
            tcp.close()

    def live(self, name, driver="null", extra=()):
        d = self.dir
        log = os.path.join(d, name)
        args = ["--bpm", "120", "--session-log", log, *extra]
        if driver == "null":
            args += ["--null-input", d + "/input.wav"]
        srv = Loopd(*args, driver=driver, loops=1)
        rec = os.path.join(d, name + "-live.wav")
        try:
            self.play_scene(srv, rec)
        finally:
            srv.stop()
        self.assertTrue(any("session log closed" in l for l in srv.log), srv.log[-5:])
        return log, rec

    def check_identical(self, log, rec):
        out = log + "-out.wav"
        code, err = replay([log, out])
        print(err[-1500:])
        self.assertEqual(code, 0, err)
        self.assertIn("took the same ones as live", err)
        self.assertNotIn("differs from the live performance", err)
        flat = rec.lstrip("/").replace("/", "_")
        _, live = read(rec)
        _, again = read(out + ".files/" + flat)
        self.assertGreater(len(live), 4 * RATE)
        self.assertGreater(float(np.sqrt(np.mean(live ** 2))), 0.05)
        self.assertEqual(live.shape, again.shape)
        diff = np.flatnonzero(np.any(live != again, axis=1))
        self.assertEqual(len(diff), 0, "first differing frame %s of %d" % (diff[:5], len(live)))
        _, whole = read(out)
        off = find_in(whole, live)
        self.assertIsNotNone(off, "the live recording is not in the replay's output")
        print("live recording == replay, sample for sample (%d frames); it sits at frame %d of the replay's output" % (len(live), off))
        return out

    def test_null_driver_replay_is_sample_identical_and_renders_again_with_rb3_and_at_96k(self):
        log, rec = self.live("null")
        out = self.check_identical(log, rec)
        # rb3: the same performance, the pitch kept where varispeed bent it (rate 0.8 at the end).
        code, err = replay([log, log + "-rb3.wav", "--stretch-method", "rb3"])
        self.assertEqual(code, 0, err)
        self.assertIn("stretch rb3", err)
        _, vari = read(out)
        _, rb3 = read(log + "-rb3.wav")
        self.assertEqual(len(vari), len(rb3))
        tail = slice(len(vari) - RATE // 2 - 4096, len(vari) - 4096)
        f_vari, f_rb3 = peak_hz(vari[tail], RATE), peak_hz(rb3[tail], RATE)
        print("last half second: varispeed %.1f Hz, rb3 %.1f Hz" % (f_vari, f_rb3))
        self.assertAlmostEqual(f_vari, 440 * 0.8, delta=8)
        self.assertAlmostEqual(f_rb3, 440, delta=8)
        # 96 kHz: as long, the same tone where the same things happened.
        code, err = replay([log, log + "-96k.wav", "--sample-rate", "96000"])
        self.assertEqual(code, 0, err)
        rate96, hi = read(log + "-96k.wav")
        self.assertEqual(rate96, 96000)
        self.assertLessEqual(abs(len(hi) / 96000 - len(vari) / RATE), 64 / RATE)
        f_hi = peak_hz(hi[len(hi) - 96000 // 2 - 8192:len(hi) - 8192], 96000)
        self.assertAlmostEqual(f_hi, 440 * 0.8, delta=8)

    def test_jack_dummy_driver_replay_is_sample_identical(self):
        jack = oscutil.NamedJack("loopd-replay-%d" % os.getpid())
        try:
            with jack.current():
                log, rec = self.live("jack", driver="jack", extra=("--jack-name", "loopd-replay"))
        finally:
            jack.stop()
        self.check_identical(log, rec)

    def test_a_cut_log_replays_up_to_the_cut_and_says_so(self):
        log, rec = self.live("forcut")
        full = log + "-full.wav"
        self.assertEqual(replay([log, full])[0], 0)
        # Cut the log in the middle of the first record after 2.5 s.
        cut = log + "-cut"
        shutil.copytree(log, cut)
        recs = log_records(cut + "/session.log")
        at = next(p for p, t, s in recs if s > int(2.5 * RATE))
        os.truncate(cut + "/session.log", at + 7)
        code, err = replay([cut, cut + "-out.wav"])
        print(err[-800:])
        self.assertEqual(code, 0, err)
        self.assertIn("cut off", err)
        _, a = read(full)
        _, b = read(cut + "-out.wav")
        self.assertEqual(len(a), len(b), "the input kept runs to the end")
        n = int(2.5 * RATE)
        self.assertTrue(np.array_equal(a[:n], b[:n]), "the same up to the cut")
        self.assertFalse(np.array_equal(a, b), "what came after the cut is not in the replay")

    def test_a_server_killed_mid_performance_replays_what_it_kept(self):
        d = self.dir
        log = os.path.join(d, "killed")
        rec = os.path.join(d, "killed-live.wav")
        srv = Loopd("--bpm", "120", "--session-log", log, "--null-input", d + "/input.wav", loops=1)
        try:
            self.play_scene(srv, rec, cut_short=True)
            time.sleep(1.5)  # past the logs' one-second sync
        finally:
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(10)
        code, err = replay([log, log + "-out.wav"])
        print(err[-800:])
        self.assertEqual(code, 0, err)
        self.assertIn("without its closing record", err)
        # The live recording as far as it reached the disk equals the replay's, frame for frame.
        _, live = read(rec)
        _, again = read(log + "-out.wav.files/" + rec.lstrip("/").replace("/", "_"))
        self.assertGreater(len(live), 2 * RATE)
        self.assertGreaterEqual(len(again), len(live))
        self.assertTrue(np.array_equal(live, again[:len(live)]), "the crash-safe part of the recording is the replay's")

    def test_a_directory_that_is_no_session_log_is_refused(self):
        d = tempfile.mkdtemp(prefix="loopd-notlog-", dir=self.dir)
        with open(d + "/session.log", "wb") as f:
            f.write(b"RIFF0000WAVEfmt nothing here")
        code, err = replay([d, d + "/out.wav"])
        self.assertEqual(code, 1)
        self.assertIn("not a loopd session log", err)
        code, err = replay([d + "/missing", d + "/out.wav"])
        self.assertEqual(code, 1)
        self.assertIn("cannot open", err)


if __name__ == "__main__":
    unittest.main()
