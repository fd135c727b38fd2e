"""The interval jam (issue 16, SPEC 4.9): a producer loopd and musician loopds on 127.0.0.1, each
on the null driver with its input from a file of clicks on known samples. The producer's total
track is read back with /sl/#/save_loop and every click is looked for on its sample."""
import http.server
import json
import os
import shutil
import struct
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import oscutil
from test_osc import Loopd

RATE = 48000
BEAT = 24000              # frames a beat at 120 BPM
CYCLE = 4 * BEAT          # one bar of 4/4: the jam's cycle (bars = 1)


def write_clicks(path, offset, length=2 * CYCLE, amp=0.5):
    """A stereo float WAV with a one-sample click `offset` frames into every beat."""
    frames = [0.0] * length
    for k in range(offset, length, BEAT):
        frames[k] = amp
    data = b"".join(struct.pack("<ff", v, v) for v in frames)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<IHHIIHH", 16, 3, 2, RATE, RATE * 8, 8, 32))
        f.write(b"data" + struct.pack("<I", len(data)) + data)


def write_noise(path, seed, length=2 * CYCLE, amp=0.2):
    """A stereo float WAV of noise: dense audio, as a real take (FLAC cannot squeeze it much)."""
    import random
    rng = random.Random(seed)
    data = b"".join(struct.pack("<ff", rng.uniform(-amp, amp), rng.uniform(-amp, amp)) for _ in range(length))
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<IHHIIHH", 16, 3, 2, RATE, RATE * 8, 8, 32))
        f.write(b"data" + struct.pack("<I", len(data)) + data)


def clicks_in(frames, threshold=0.2):
    """Sample positions of the loop's clicks (channel 0)."""
    return [i for i, f in enumerate(frames) if abs(f[0]) > threshold]


class Jam(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="loopd-jam-")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *args):
        s = Loopd("--bpm", "120", "--meter", "4", *args)
        self.servers.append(s)
        s.request("/notify", 1)
        return s

    def musician(self, name, offset, *args):
        wav = os.path.join(self.dir, name + ".wav")
        write_clicks(wav, offset)
        return self.start("--null-input", wav, *args)

    def events(self, srv, kinds=("/jam_turn", "/jam_take")):
        """Every jam notification so far, in order (kept on srv.jam)."""
        srv.client.recv(20)
        keep = []
        for p, a in srv.replies:
            if p in kinds:
                srv.jam.append((p, list(a)))
            else:
                keep.append((p, a))
        srv.replies[:] = keep
        return srv.jam

    def wait_event(self, srv, pred, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events(srv):
                if pred(e):
                    return e
            time.sleep(0.02)
        self.fail("no such jam event within %.0f s; got %r" % (timeout, self.events(srv)[-12:]))

    def host(self, *args):
        p = self.start(*args)
        p.jam = []
        r = p.request("/jam_host", 0, 1)
        port, index = r[1], r[2]
        return p, port, index

    def join(self, srv, port, name):
        srv.jam = []
        r = srv.request("/jam_join", "http://127.0.0.1:%d" % port, name, timeout=10)
        return r[1]

    def save_loop(self, srv, index):
        path = os.path.join(self.dir, "total-%d.wav" % time.time_ns())
        srv.send("/sl/%d/save_loop" % index, path, "float", "little", "osc.udp://127.0.0.1:%d/" % srv.client.port, "/err")
        srv.wait("/done", "/sl/%d/save_loop" % index, timeout=10)
        rate, ch, frames, _ = oscutil.read_wav(path)
        return frames

    def test_two_musicians_takes_land_on_their_samples_in_turn(self):
        producer, port, index = self.host()
        # A compensates 100 frames of round trip (its clicks land 100 frames earlier in its take);
        # B none (the null driver's own figure: 0).
        a = self.musician("alice", 3000, "--input-latency", "100", "--output-latency", "0")
        b = self.musician("bob", 9000)
        self.join(a, port, "alice")
        self.join(b, port, "bob")
        mixed = {}
        deadline = time.time() + 40
        while len(mixed) < 2 and time.time() < deadline:
            for p, e in self.events(producer):
                if p == "/jam_take" and e[2].startswith("mixed"):
                    mixed.setdefault(e[1], e[0])
            time.sleep(0.05)
        print("producer events:", self.events(producer))
        self.assertEqual(set(mixed), {"alice", "bob"}, self.events(producer))
        frames = self.save_loop(producer, index)
        self.assertEqual(len(frames), CYCLE)
        got = clicks_in(frames)
        want = sorted([2900 + k * BEAT for k in range(4)] + [9000 + k * BEAT for k in range(4)])
        print("clicks in the total track:", got)
        self.assertEqual(len(got), len(want), got)
        for g, w in zip(got, want):
            self.assertLessEqual(abs(g - w), 1, (got, want))
        # Turns round robin, in the order the musicians joined.
        # (Until bob has joined, every turn is alice's: round robin over those present.)
        turns = [e[1] for p, e in self.events(producer) if p == "/jam_turn" and e[1]]
        self.assertEqual(turns[0], "alice", turns)
        both = turns[turns.index("bob"):]
        self.assertGreaterEqual(len(both), 2, turns)
        for x, y in zip(both, both[1:]):
            self.assertNotEqual(x, y, turns)
        # Each musician plays the mix: bob's loop comes to hold alice's clicks (and his own).
        bob_loop = self.wait_loop_clicks(b, 0, lambda c: any(abs(x - 2900) <= 1 for x in c), 20)
        self.assertTrue(all(any(abs(x - w) <= 1 for w in want) for x in bob_loop), bob_loop)
        for p_, e in self.events(producer):
            if p_ == "/jam_take" and e[2].startswith("mixed"):
                print("take of cycle %d by %s: %s" % (e[0], e[1], e[2]))
        # A bad take is undone on the producer's loop: the last mix comes out, exactly.
        a.request("/jam_leave")
        b.request("/jam_leave")
        time.sleep(3 * CYCLE / RATE)  # takes in flight land, turns find nobody
        before = self.save_loop(producer, index)
        producer.send("/sl/%d/hit" % index, "undo")
        time.sleep(0.3)
        after = self.save_loop(producer, index)
        diff = [i for i in range(CYCLE) if abs(before[i][0] - after[i][0]) > 1e-4]
        print("undo took out clicks at", diff)
        self.assertEqual(len(diff), 4, diff)
        pattern = {d % BEAT for d in diff}
        self.assertIn(pattern, ({2900}, {9000}), diff)
        for i in diff:
            self.assertAlmostEqual(before[i][0] - after[i][0], 0.5, delta=1e-4)

    def wait_loop_clicks(self, srv, index, pred, timeout):
        deadline = time.time() + timeout
        got = []
        while time.time() < deadline:
            got = clicks_in(self.save_loop(srv, index))
            if pred(got):
                return got
            time.sleep(0.5)
        self.fail("the loop never held the clicks expected; last: %r" % got)

    def test_a_killed_musician_loses_its_turns_and_the_others_go_on(self):
        producer, port, index = self.host()
        a = self.musician("alice", 3000)
        b = self.musician("bob", 9000)
        self.join(a, port, "alice")
        self.join(b, port, "bob")
        # Kill bob in the middle of alice's turn, after he had one: he still counts as there when
        # the next cycle begins (seen within 2 s), so that turn is his, and nobody records it.
        e = self.wait_event(producer, lambda e: e[0] == "/jam_turn" and e[1][1] == "alice" and e[1][0] >= 2, 30)
        killed_in = e[1][0]
        time.sleep(0.4 * CYCLE / RATE)
        b.proc.kill()
        b.proc.wait()
        self.wait_event(producer, lambda e: e[0] == "/jam_turn" and e[1] == [killed_in + 1, "bob"], CYCLE / RATE + 2)
        self.wait_event(producer, lambda e: e[0] == "/jam_take" and e[1] == [killed_in + 1, "bob", "missing"], 3 * CYCLE / RATE + 2)
        # Alice goes on: two more of her takes mixed after the kill, and every turn is hers.
        deadline = time.time() + 30
        later = []
        while time.time() < deadline:
            later = [e for p, e in self.events(producer) if p == "/jam_take" and e[1] == "alice" and e[2].startswith("mixed") and e[0] > killed_in + 1]
            if len(later) >= 2:
                break
            time.sleep(0.1)
        self.assertGreaterEqual(len(later), 2, self.events(producer))
        turns = [(e[0], e[1]) for p, e in self.events(producer) if p == "/jam_turn" and e[0] > killed_in + 1]
        print("turns after bob was killed in cycle %d: %r" % (killed_in, turns))
        self.assertTrue(turns and all(n == "alice" for _, n in turns), turns)
        producer.status()  # the producer still answers

    def http(self, port, method, path, body=None, headers=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def wav_bytes(self, frames, rate=RATE, clicks=()):
        path = os.path.join(self.dir, "take.wav")
        data = bytearray(frames * 8)
        for k in clicks:
            struct.pack_into("<ff", data, k * 8, 0.5, 0.5)
        with open(path, "wb") as f:
            f.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE")
            f.write(b"fmt " + struct.pack("<IHHIIHH", 16, 3, 2, rate, rate * 8, 8, 32))
            f.write(b"data" + struct.pack("<I", len(data)) + bytes(data))
        with open(path, "rb") as f:
            return f.read()

    def test_bad_takes_are_refused_with_reasons_and_the_session_goes_on(self):
        producer, port, index = self.host()
        st, body = self.http(port, "GET", "/jam/state?musician=mallory")
        self.assertEqual(st, 200)
        state = json.loads(body)
        self.assertEqual((state["bpm"], state["beatsPerBar"], state["bars"], state["loopFrames"], state["sampleRate"]),
                         (120, 4, 1, CYCLE, RATE))
        self.assertEqual(state["musicians"], ["mallory"])
        # Wait for a cycle that is mallory's turn.
        deadline = time.time() + 10
        while time.time() < deadline:
            state = json.loads(self.http(port, "GET", "/jam/state?musician=mallory")[1])
            if state["turn"] == "mallory":
                break
            time.sleep(0.1)
        c = state["cycle"]
        good = self.wav_bytes(CYCLE, clicks=[4321])
        cases = [
            ("/jam/take/%d?musician=eve" % c, good, 403, "unknown musician"),
            ("/jam/take/%d?musician=mallory" % (c + 5), good, 409, "nobody's turn"),
            ("/jam/take/%d?musician=mallory" % c, self.wav_bytes(100), 400, "wrong length: 100 frames, a cycle is 96000"),
            ("/jam/take/%d?musician=mallory" % c, self.wav_bytes(CYCLE, rate=44100), 400, "wrong rate: 44100 Hz"),
            ("/jam/take/%d?musician=mallory" % c, b"this is not audio" * 100, 400, "malformed: not audio"),
            ("/jam/take/x?musician=mallory", good, 400, "whole number"),
        ]
        wav = {"Content-Type": "audio/wav"}  # (cpp-httplib caps form-encoded bodies at 8 KiB: 413)
        for path, data, code, why in cases:
            st, body = self.http(port, "POST", path, data, wav)
            self.assertEqual(st, code, (path, body))
            self.assertIn(why, body.decode(), path)
        st, _ = self.http(port, "POST", "/jam/take/%d?musician=mallory" % c, good, wav)
        self.assertEqual(st, 202)
        st, body = self.http(port, "POST", "/jam/take/%d?musician=mallory" % c, good, wav)
        self.assertEqual((st, "has its take already" in body.decode()), (409, True))
        # Each refusal of a real turn is a notification, and the good take is mixed in on time.
        self.wait_event(producer, lambda e: e[0] == "/jam_take" and e[1][2].startswith("wrong length"), 5)
        self.wait_event(producer, lambda e: e[0] == "/jam_take" and e[1][2].startswith("malformed"), 5)
        e = self.wait_event(producer, lambda e: e[0] == "/jam_take" and e[1][0] == c and e[1][2].startswith("mixed at cycle %d" % (c + 1)), 2 * CYCLE / RATE + 2)
        print("a take posted by hand:", e[1][2])
        got = clicks_in(self.save_loop(producer, index))
        self.assertEqual(got, [4321])
        # Too late: the take of a cycle two cycles ago.
        while json.loads(self.http(port, "GET", "/jam/state?musician=mallory")[1])["cycle"] < c + 3:
            time.sleep(0.1)
        state = json.loads(self.http(port, "GET", "/jam/state?musician=mallory")[1])
        st, body = self.http(port, "POST", "/jam/take/%d?musician=mallory" % (state["cycle"] - 2), good, wav)
        self.assertEqual(st, 410, body)
        self.assertIn("late", body.decode())
        # The mixes: FLAC, and 404 for one not made yet.
        st, body = self.http(port, "GET", "/jam/mix/%d" % state["cycle"])
        if st == 404:
            time.sleep(0.5)
            st, body = self.http(port, "GET", "/jam/mix/%d" % state["cycle"])
        self.assertEqual((st, body[:4]), (200, b"fLaC"))
        self.assertEqual(self.http(port, "GET", "/jam/mix/%d" % (state["cycle"] + 50))[0], 404)
        # OSC: bad arguments fail with reasons, the server goes on.
        self.assertIn("a jam is running", producer.fail("/jam_host", 0, 1))
        producer.request("/jam_leave")
        self.assertIn("port must be", producer.fail("/jam_host", 70000, 1))
        self.assertIn("http://host:port", producer.fail("/jam_join", "ftp://x", "a"))
        self.assertIn("a musician's name", producer.fail("/jam_join", "http://127.0.0.1:1", "no spaces"))
        self.assertIn("no jam", producer.fail("/jam_leave"))
        self.assertIn("bars must be", producer.fail("/jam_host", 0, 0))
        producer.status()

    def test_a_token_keeps_strangers_out(self):
        producer, port, index = self.host("--jam-token", "s3cret")
        self.assertEqual(self.http(port, "GET", "/jam/state")[0], 401)
        self.assertEqual(self.http(port, "POST", "/jam/take/0?musician=x", b"x")[0], 401)
        self.assertEqual(self.http(port, "GET", "/jam/state", headers={"Authorization": "Bearer s3cret"})[0], 200)
        good = self.musician("alice", 3000, "--jam-token", "s3cret")
        self.join(good, port, "alice")
        stranger = self.musician("eve", 5000, "--jam-token", "guess")
        stranger.jam = []
        stranger.send("/jam_join", "http://127.0.0.1:%d" % port, "eve")
        reason = stranger.wait("/fail", "/jam_join", timeout=10)[1]
        print("a wrong token:", reason)
        self.assertIn("401", reason)
        self.wait_event(producer, lambda e: e[0] == "/jam_take" and e[1][1] == "alice" and e[1][2].startswith("mixed"), 20)
        self.assertNotIn("eve", json.loads(self.http(port, "GET", "/jam/state?token=s3cret")[1])["musicians"])

    def test_an_unreachable_or_broken_producer_fails_the_join(self):
        m = self.musician("alice", 3000)
        m.jam = []
        # Nobody listens on this port.
        import socket
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
        sock.close()
        m.send("/jam_join", "http://127.0.0.1:%d" % dead, "alice")
        reason = m.wait("/fail", "/jam_join", timeout=10)[1]
        print("no producer:", reason)
        self.assertIn("unreachable", reason)
        m.request("/jam_leave")
        # A producer whose state is not a jam state, then one at another rate.
        answers = {"body": b"{not json"}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answers["body"])))
                self.end_headers()
                self.wfile.write(answers["body"])

            def log_message(self, *args):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            url = "http://127.0.0.1:%d" % srv.server_address[1]
            m.send("/jam_join", url, "alice")
            reason = m.wait("/fail", "/jam_join", timeout=10)[1]
            print("a broken state:", reason)
            self.assertIn("malformed state", reason)
            answers["body"] = json.dumps({"bpm": 120, "beatsPerBar": 4, "bars": 1, "loopFrames": 88200, "sampleRate": 44100,
                                          "cycle": 3, "turn": "", "musicians": ["alice"]}).encode()
            m.request("/jam_leave")
            m.send("/jam_join", url, "alice")
            reason = m.wait("/fail", "/jam_join", timeout=10)[1]
            print("another rate:", reason)
            self.assertIn("the session runs at 44100 Hz, this server at 48000 Hz", reason)
        finally:
            srv.shutdown()
        m.status()  # still there

    def test_measure_take_lateness_and_cost_per_cycle(self):
        """Figures for the notes (printed, not judged: this machine is shared)."""
        producer, port, index = self.host()
        paths = []
        for k, name in enumerate(("alice", "bob", "idle")):
            paths.append(os.path.join(self.dir, name + "-noise.wav"))
            write_noise(paths[-1], k)
        a = self.start("--null-input", paths[0])
        b = self.start("--null-input", paths[1])
        idle = self.start("--null-input", paths[2])  # a loopd playing a loop, no jam: the baseline
        idle.request("/loop_add", 2, 3.0)
        self.join(a, port, "alice")
        self.join(b, port, "bob")
        self.wait_event(producer, lambda e: e[0] == "/jam_take" and e[1][2].startswith("mixed"), 20)

        def cpu(srv):
            with open("/proc/%d/stat" % srv.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        def jam_bytes(srv):
            srv.send("/jam")
            r = srv.wait("/jam.reply")
            return r[4] + r[5]

        cycles = 8
        t0 = [cpu(x) for x in (producer, a, idle)]
        k0 = [jam_bytes(x) for x in (producer, a)]
        time.sleep(cycles * CYCLE / RATE)
        t1 = [cpu(x) for x in (producer, a, idle)]
        k1 = [jam_bytes(x) for x in (producer, a)]
        per = [(y - x) / cycles * 1000 for x, y in zip(t0, t1)]
        print("CPU per %.1f s cycle: producer %.1f ms, musician %.1f ms, a loopd playing a loop without a jam %.1f ms"
              % (CYCLE / RATE, per[0], per[1], per[2]))
        print("HTTP per cycle: producer %.0f KiB in+out, musician %.0f KiB in+out (a cycle of stereo float audio: %.0f KiB)"
              % ((k1[0] - k0[0]) / cycles, (k1[1] - k0[1]) / cycles, CYCLE * 8 / 1024))
        margins = []
        for p, e in self.events(producer):
            if p == "/jam_take" and e[2].startswith("mixed"):
                margins.append(float(e[2].split(", ")[1].split(" s")[0]))
        print("takes came %s s before the boundary that mixed them" % ["%.3f" % m for m in margins])
        self.assertTrue(margins)
        self.assertTrue(all(m > 0 for m in margins), margins)


if __name__ == "__main__":
    unittest.main()
