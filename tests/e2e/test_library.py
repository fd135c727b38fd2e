"""The loop generator (issue 17, SPEC 4.10): loopd asks a stable-audio-style backend (a stub
HTTP server here on 127.0.0.1, answering as the stable-audio API does) for a loop, fits it to
exactly its bars at the clock's tempo, keeps it in the bank and swaps it into a loop; a backend
that stalls, fails or answers text gives /fail and the audio runs on."""
import base64
import http.server
import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import oscutil
from test_osc import Loopd


def clicks_wav(bpm, beats, rate=44100):
    """A stereo 16-bit WAV: a 40-sample burst on every beat."""
    import math
    beat = 60.0 / bpm * rate
    n = int(round(beat * beats))
    frames = [0.0] * n
    for b in range(beats):
        at = int(round(beat * b))
        for i in range(40):
            frames[at + i] = 0.8 * math.sin(2 * math.pi * 2000.0 * i / rate) * (1.0 - i / 40.0)
    data = b"".join(struct.pack("<hh", int(v * 32767), int(v * 32767)) for v in frames)
    out = io.BytesIO()
    out.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE")
    out.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, 2, rate, rate * 4, 4, 16))
    out.write(b"data" + struct.pack("<I", len(data)) + data)
    return out.getvalue()


class Stub:
    """The backend: POST /generate/loop; `mode` says how it answers."""

    def __init__(self):
        self.mode = "json"
        self.requests = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.requests.append((self.path, body))
                if stub.mode == "stall":
                    time.sleep(5)
                    return self.answer(200, "application/json", b"{}")
                if stub.mode == "500":
                    return self.answer(500, "application/json", json.dumps({"detail": "model overloaded"}).encode())
                if stub.mode == "text":
                    return self.answer(200, "text/plain", b"hello, I am not audio")
                wav = clicks_wav(100.0, 16)  # 4 bars at 100 BPM, at 44.1 kHz
                if stub.mode == "wav":
                    return self.answer(200, "audio/wav", wav)
                return self.answer(200, "application/json", json.dumps({"audio_base64": base64.b64encode(wav).decode(), "seed": 7}).encode())

            def answer(self, code, ctype, body):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def onsets(frames, threshold=0.04, gap=2000):
    out, quiet = [], gap
    for i, f in enumerate(frames):
        if abs(f[0]) > threshold:
            if quiet >= gap:
                out.append(i)
            quiet = 0
        else:
            quiet += 1
    return out


class Generator(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="loopd-gen-")
        self.stub = Stub()
        self.srv = Loopd("--bpm", "120", "--bank", os.path.join(self.dir, "bank"), "--generator", self.stub.url,
                         "--generator-timeout", "2")
        self.srv.request("/notify", 1)

    def tearDown(self):
        self.srv.stop()
        self.stub.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_a_loop_made_at_100_bpm_becomes_exactly_4_bars_at_120_in_the_bank_and_a_loop(self):
        srv = self.srv
        srv.request("/loop_add", 2, 10.0)
        srv.send("/generate", "drums1", "funky drums", 4, "drums", 7, "sl:0")
        srv.wait("/done", "/generate", timeout=60)
        path, body = self.stub.requests[-1]
        self.assertEqual(path, "/generate/loop")
        for part in (b"funky drums 120bpm", b'name="bars"', b'name="loop_type"', b"drums", b'name="seed"', b"7"):
            self.assertIn(part, body)
        with open(os.path.join(self.dir, "bank", "drums1.json")) as f:
            side = json.load(f)
        self.assertEqual((side["bpm"], side["bars"], side["frames"], side["sampleRate"]), (120, 4, 384000, 48000))
        self.assertIn("generated", side["tags"])
        # The loop: exactly 4 bars at 120, a beat every 24000 frames (within 2 ms).
        out = os.path.join(self.dir, "loop.wav")
        deadline = time.time() + 10
        while time.time() < deadline:
            srv.send("/sl/0/save_loop", out, "float", "little", "osc.udp://127.0.0.1:%d/" % srv.client.port, "/err")
            try:
                srv.wait("/done", "/sl/0/save_loop", timeout=3)
                break
            except AssertionError:
                time.sleep(0.5)  # empty until the next bar
        rate, ch, frames, _ = oscutil.read_wav(out)
        self.assertEqual(len(frames), 384000)
        on = onsets(frames)
        print("beats of the generated loop:", on)
        self.assertEqual(len(on), 16)
        worst = max(abs(o - 24000 * k) for k, o in enumerate(on))
        print("worst beat %d samples (%.2f ms) off the 120 BPM grid" % (worst, worst / 48.0))
        self.assertLessEqual(worst, 96)
        # A WAV body works as well.
        self.stub.mode = "wav"
        srv.send("/generate", "drums2", "more drums", 2)
        srv.wait("/done", "/generate", timeout=60)
        with open(os.path.join(self.dir, "bank", "drums2.json")) as f:
            self.assertEqual(json.load(f)["frames"], 192000)

    def test_a_stalled_failing_or_chatty_backend_fails_and_the_audio_runs_on(self):
        srv = self.srv
        cases = [("stall", "did not answer within 2 s"), ("500", "500: model overloaded"), ("text", "not audio")]
        for mode, why in cases:
            self.stub.mode = mode
            s0, t0 = srv.status()[19], time.time()
            srv.send("/generate", "x" + mode, "anything")
            reason = srv.wait("/fail", "/generate", timeout=30)[1]
            s1, t1 = srv.status()[19], time.time()
            print("%s: %s (the clock ran %.2f s of %.2f s)" % (mode, reason, (s1 - s0) / 48000.0, t1 - t0))
            self.assertIn(why, reason)
            self.assertGreater((s1 - s0) / 48000.0, 0.8 * (t1 - t0) - 0.1)
            self.assertFalse(os.path.exists(os.path.join(self.dir, "bank", "x" + mode + ".json")))
        progress = [a for p, a in srv.replies if p == "/progress"]
        self.assertTrue(any(a[0] == "/generate" and a[1] == "xstall" for a in progress), progress)
        # Bad arguments.
        self.assertIn("bars must be", srv.fail("/generate", "y", "p", 0))
        self.assertIn("not a bank name", srv.fail("/generate", "../y", "p"))
        srv.status()


if __name__ == "__main__":
    unittest.main()


class Projects(unittest.TestCase):
    """Projects with the real binary: a scene saved by one server, opened by a fresh one started
    with --project (the sample-for-sample null test is tests/test_project.cpp, offline)."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="loopd-project-")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def server(self, *args):
        s = Loopd(*args, loops=1)
        self.servers.append(s)
        return s

    def get(self, srv, ctrl):
        url = "osc.udp://127.0.0.1:%d/" % srv.client.port
        srv.send("/sl/0/get", ctrl, url, "/v")
        return srv.wait("/v")[2]

    def test_a_project_saved_by_one_server_opens_in_a_fresh_one(self):
        d = self.dir
        subprocess.run(["sox", "-n", "-r", "48000", "-c", "2", "-b", "16", d + "/tone.wav", "synth", "1.5", "sine", "440", "vol", "0.3"], check=True)
        subprocess.run(["sox", "-n", "-r", "48000", "-c", "2", "-b", "16", d + "/in.wav", "synth", "2", "pinknoise", "vol", "0.2"], check=True)
        a = self.server("--null-input", d + "/in.wav", "--bpm", "100")
        a.request("/notify", 1)
        a.request("/b_allocRead", 7, d + "/tone.wav", reply="/done", first="/b_allocRead")
        a.send("/g_new", 50, 1, 0)
        a.send("/s_new", "player", 51, 0, 50, "buf", 7, "loop", 1, "gain", 0.6)
        a.send("/s_new", "eq3", 52, 1, 50, "low", 0.3)
        a.send("/n_set", 50, "pan", 0.25)
        a.send("/tempo", 126.0)
        a.send("/sl/0/hit", "record")
        time.sleep(0.8)
        a.send("/sl/0/hit", "record")
        time.sleep(0.3)
        loop_len = self.get(a, "loop_len")
        self.assertGreater(loop_len, 0.5)
        a.request("/project_save", d + "/set", reply="/done", first="/project_save", timeout=20)
        a.stop()
        for f in ("project.json", "buffers/7.wav", "loops.json", "loops.json.loop0.wav"):
            self.assertTrue(os.path.exists(os.path.join(d, "set", f)), f)
        os.remove(d + "/tone.wav")  # the project holds its own audio

        b = self.server("--project", d + "/set")
        deadline = time.time() + 10
        while not any("project loaded from" in l for l in b.log) and time.time() < deadline:
            time.sleep(0.05)
        self.assertTrue(any("project loaded from" in l for l in b.log), b.log[-10:])
        tree = b.request("/g_queryTree", 0, 1, reply="/g_queryTree.reply")
        self.assertIn(50, tree)
        self.assertIn(51, tree)
        self.assertIn(52, tree)
        self.assertEqual(b.request("/b_query", 7, reply="/b_info")[1], 72000)
        self.assertAlmostEqual(self.get(b, "loop_len"), loop_len, places=4)
        self.assertAlmostEqual(float(b.request("/s_get", 50, "pan", reply="/n_set")[2]), 0.25, places=5)
        self.assertAlmostEqual(float(b.request("/s_get", 52, "low", reply="/n_set")[2]), 0.3, places=5)
        # A partial copy is refused and the open project stays.
        shutil.copytree(d + "/set", d + "/partial")
        os.remove(d + "/partial/loops.json.loop0.wav")
        b.send("/project_load", d + "/partial")
        reason = b.wait("/fail", "/project_load")[1]
        self.assertIn("partial", reason)
        self.assertEqual(b.request("/b_query", 7, reply="/b_info")[1], 72000)
