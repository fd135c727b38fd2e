"""The interval jam (issue 16, SPEC 4.9): a producer loopd and musician loopds on 127.0.0.1, each
on the null driver with its input from a file of clicks on known samples. The producer's total
track is read back with /sl/#/save_loop and every click is looked for on its sample."""
import json
import os
import shutil
import signal
import struct
import tempfile
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
        turns = [e[1] for p, e in self.events(producer) if p == "/jam_turn" and e[1]]
        for x, y in zip(turns, turns[1:]):
            self.assertNotEqual(x, y, turns)


if __name__ == "__main__":
    unittest.main()
