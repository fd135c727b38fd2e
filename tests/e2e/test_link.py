"""Ableton Link (issue 16): loopd servers and LinkHut (Ableton's own peer, nobody here wrote it)
in one Link session. Run inside a private network namespace (tests/e2e/netns-run): Link
multicasts on every interface that is up, and here only the namespace's loopback is."""
import os
import re
import shutil
import subprocess
import time
import unittest

import threading

import oscutil
from test_osc import Loopd

STATUS_PEERS = 26  # /status.reply field: Link peers


def in_private_namespace():
    return os.environ.get("LOOPD_NETNS") == "1"


def link_beat(srv):
    srv.send("/link_beat")
    r = srv.wait("/link_beat.reply")
    return {"host": r[0], "ours": r[1], "theirs": r[2], "bpm": r[3], "sample": r[4], "now": r[5]}


def wait_until(pred, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    return pred()


def phase_ms(a, b, quantum=4):
    """How far apart (ms) two servers' beat positions are, modulo the quantum, at one moment of
    Link's clock: each reported its beat at its own block's host time; both are carried to a
    common time at the session's tempo."""
    t = max(a["host"], b["host"])
    bpm = a["bpm"]
    ba = a["ours"] + (t - a["host"]) / 1e6 * bpm / 60.0
    bb = b["ours"] + (t - b["host"]) / 1e6 * bpm / 60.0
    d = (ba - bb + quantum / 2.0) % quantum - quantum / 2.0
    return d * 60.0 / bpm * 1000.0


@unittest.skipUnless(in_private_namespace(), "Link tests run in a private network namespace (tests/e2e/netns-run)")
class Link(unittest.TestCase):
    def setUp(self):
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()

    def start(self, *args):
        s = Loopd(*args)
        self.servers.append(s)
        return s

    def test_two_servers_share_tempo_and_phase_and_a_later_one_adopts_them(self):
        a = self.start("--link", "--bpm", "120")
        a.send("/link")
        self.assertEqual(a.wait("/link.reply")[0], 1)
        # Link: of two sessions that meet, the older wins (by more than 0.5 s; else by id).
        time.sleep(1.0)
        b = self.start("--link", "--bpm", "100")
        # B joined a session at 120: it took the tempo.
        t0 = time.time()
        got = wait_until(lambda: abs(b.status()[13] - 120.0) < 1e-3, 5.0)
        print("a server joining at 100 BPM took the session's 120 after %.2f s" % (time.time() - t0))
        self.assertTrue(got, b.status()[13])
        self.assertTrue(wait_until(lambda: a.status()[STATUS_PEERS] == 1 and b.status()[STATUS_PEERS] == 1, 5.0))
        # A tempo change on A reaches B within 1 s.
        a.send("/tempo", 133.0)
        t0 = time.time()
        self.assertTrue(wait_until(lambda: abs(b.status()[13] - 133.0) < 1e-3, 1.0), b.status()[13])
        print("A's /tempo 133 reached B after %.3f s" % (time.time() - t0))
        # Their beats agree within 2 ms on Link's clock, and each agrees with the session's.
        time.sleep(1.0)
        worst = 0.0
        for _ in range(10):
            ra, rb = link_beat(a), link_beat(b)
            worst = max(worst, abs(phase_ms(ra, rb)))
            for r in (ra, rb):
                own = (r["ours"] - r["theirs"] + 2.0) % 4.0 - 2.0
                self.assertLess(abs(own * 60.0 / r["bpm"] * 1000.0), 2.0, r)
            time.sleep(0.1)
        print("beat phase between the two servers: worst %.3f ms over 10 reads" % worst)
        self.assertLess(worst, 2.0)
        # A ramp on B (its own source: manual) reaches A as it goes.
        b.send("/tempo", 90.0, 1.0)
        self.assertTrue(wait_until(lambda: abs(a.status()[13] - 90.0) < 1e-3, 2.5), a.status()[13])
        # A third server joining later adopts the tempo and the phase.
        c = self.start("--link", "--bpm", "150")
        self.assertTrue(wait_until(lambda: abs(c.status()[13] - 90.0) < 1e-3, 5.0), c.status()[13])
        time.sleep(0.5)
        self.assertLess(abs(phase_ms(link_beat(a), link_beat(c))), 2.0)

    def test_tempo_source_link_follows_only(self):
        a = self.start("--bpm", "120")
        a.send("/tempo_source", "link")
        self.assertIn("needs Link on", a.wait("/fail", "/tempo_source")[1])
        a.send("/link", 1)
        a.wait("/done", "/link")
        a.send("/tempo_source", "link")
        a.wait("/done", "/tempo_source")
        a.send("/tempo", 100.0)
        self.assertIn("the tempo source is link", a.wait("/fail", "/tempo")[1])
        time.sleep(1.0)
        b = self.start("--link")
        self.assertTrue(wait_until(lambda: a.status()[STATUS_PEERS] == 1, 5.0))
        b.send("/tempo", 97.0)
        self.assertTrue(wait_until(lambda: abs(a.status()[13] - 97.0) < 1e-3, 1.0), a.status()[13])
        a.send("/link", 0)
        a.wait("/done", "/link")
        a.send("/tempo_source")
        self.assertEqual(a.wait("/tempo_source.reply")[0], "manual")
        self.assertEqual(a.status()[STATUS_PEERS], 0)

    def test_notifications_and_start_stop(self):
        a = self.start("--link")
        a.send("/notify", 1)
        a.wait("/done", "/notify")
        b = self.start("--link")
        got = a.wait("/link", timeout=5.0)
        self.assertEqual(got[0], 1, got)
        a.send("/link_play", 1)
        self.assertIn("start/stop sync is off", a.wait("/fail", "/link_play")[1])
        a.send("/link_startstop", 1)
        b.send("/link_startstop", 1)
        b.send("/notify", 1)
        a.wait("/done", "/link_startstop")
        a.send("/link_play", 1)
        a.wait("/done", "/link_play")
        self.assertEqual(b.wait("/link_play", timeout=3.0), [1])
        a.send("/link_play", 0)
        self.assertEqual(b.wait("/link_play", timeout=3.0), [0])


class LinkHut:
    """Ableton's LinkHut (ableton-link-utils) on a JACK server of its own, run headless under
    `script` (it wants a terminal); keys go to its stdin, its status line is read back:
    enabled | peers | quantum | start stop sync | tempo | beats | metro."""

    def __init__(self, jack):
        self.proc = subprocess.Popen(["script", "-qc", "LinkHut", "/dev/null"], env=dict(jack.env, JACK_NO_START_SERVER="1"),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.last = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(4096)
            if not chunk:
                return
            buf += chunk
            *lines, buf = re.split(rb"[\r\n]", buf)
            for l in lines:
                f = [x.strip() for x in l.decode(errors="replace").split("|")]
                if len(f) == 7 and f[0] in ("yes", "no"):
                    self.last = {"enabled": f[0] == "yes", "peers": int(f[1]), "tempo": float(f[4]), "beats": float(f[5]),
                                 "at": time.time()}

    def key(self, k):
        self.proc.stdin.write(k.encode())
        self.proc.stdin.flush()

    def stop(self):
        try:
            self.key("q")
            self.proc.wait(5)
        except Exception:
            self.proc.kill()
            self.proc.wait(5)
        self.proc.stdin.close()
        self.thread.join(5)
        self.proc.stdout.close()


@unittest.skipUnless(in_private_namespace(), "Link tests run in a private network namespace (tests/e2e/netns-run)")
@unittest.skipUnless(shutil.which("LinkHut"), "LinkHut (ableton-link-utils) not installed")
class WithLinkHut(unittest.TestCase):
    def setUp(self):
        self.jack = oscutil.NamedJack("loopd-linkhut")
        self.hut = LinkHut(self.jack)
        self.srv = None

    def tearDown(self):
        self.hut.stop()
        if self.srv:
            self.srv.stop()
        self.jack.stop()

    def test_loopd_and_linkhut_share_tempo_both_ways(self):
        self.assertTrue(wait_until(lambda: self.hut.last is not None, 10.0), "LinkHut printed no status")
        self.hut.key("a")  # LinkHut joins Link (at its 120 BPM)
        self.assertTrue(wait_until(lambda: self.hut.last["enabled"], 3.0))
        time.sleep(1.0)    # its session is the older one
        self.srv = Loopd("--link", "--bpm", "100")
        t0 = time.time()
        self.assertTrue(wait_until(lambda: abs(self.srv.status()[13] - 120.0) < 1e-3, 5.0), self.srv.status()[13])
        print("loopd joining at 100 BPM took LinkHut's 120 after %.2f s" % (time.time() - t0))
        self.assertTrue(wait_until(lambda: self.hut.last["peers"] == 1, 5.0), self.hut.last)
        # LinkHut's tempo keys reach loopd within a second ...
        for _ in range(3):
            self.hut.key("e")  # (LinkHut takes one key per pass of its loop)
            time.sleep(0.15)
        t0 = time.time()
        self.assertTrue(wait_until(lambda: abs(self.srv.status()[13] - 123.0) < 1e-3, 1.0), self.srv.status()[13])
        print("LinkHut's +3 BPM reached loopd after %.3f s" % (time.time() - t0))
        # ... and loopd's /tempo reaches LinkHut.
        self.srv.send("/tempo", 90.0)
        t0 = time.time()
        self.assertTrue(wait_until(lambda: abs(self.hut.last["tempo"] - 90.0) < 0.01, 1.0), self.hut.last)
        print("loopd's /tempo 90 reached LinkHut after %.3f s" % (time.time() - t0))
        # The same beat phase: LinkHut's beat (two decimals, as it prints it) against loopd's at
        # that moment on Link's clock (loopd's /link_beat carried to the time LinkHut printed).
        time.sleep(0.5)
        worst = 0.0
        for _ in range(10):
            r = link_beat(self.srv)
            h = dict(self.hut.last)
            ours = r["ours"] + (r["now"] - r["host"]) / 1e6 * r["bpm"] / 60.0 - (time.time() - h["at"]) * r["bpm"] / 60.0
            d = (ours - h["beats"] + 2.0) % 4.0 - 2.0
            worst = max(worst, abs(d))
            time.sleep(0.1)
        print("loopd's beat against LinkHut's printed beat: worst %.3f beats (LinkHut prints every 20 ms, to 0.01 beat)" % worst)
        self.assertLess(worst, 0.1)


if __name__ == "__main__":
    unittest.main()
