"""End-to-end: the clients users already have, unchanged, against the real binary.

  Sclang   SuperCollider's sclang (Debian supercollider-language) with Server.remote: Buffer.read
           with an action, Synth(\\player, ...), .set, .get, s.queryAllNodes, a timetagged s.bind,
           s.freeAll (the looper's loop survives) -- no /fail but the documented SynthDef one
  Pd       Pd vanilla's [oscparse] receives /n_go, /status.reply and /done after
           /reply_format float32, and prints no error
  SlConsole, SlGui   SooperLooper's own clients (Debian sooperlooper): see test_slclients.py

Each class is skipped when its program is not installed (scripts/test installs them).
Run with Debian's /usr/bin/python3 (python3-liblo). LOOPD_BIN names the binary.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import oscutil
from test_osc import Loopd, tone, write_wav16

SCLANG_SCRIPT = r"""
(
var port = %(port)d, dir = "%(dir)s", goes = List[];
OSCFunc({ |msg| goes.add(msg[1]) }, '/n_go');
Server.default = s = Server.remote(\loopd, NetAddr("127.0.0.1", port));
s.doWhenBooted({
	fork {
		var b, x, y;
		"MARK booted clientID %%".format(s.clientID).postln;
		b = Buffer.read(s, dir +/+ "tone.wav", action: { |buf| "MARK read %%".format(buf.numFrames).postln });
		s.sync;
		"MARK numFrames %% channels %%".format(b.numFrames, b.numChannels).postln;
		x = Synth(\player, [\buf, b.bufnum, \loop, 1, \gain, 0.5]);
		s.sync;
		x.set(\gain, 0.25);
		x.get(\gain, { |v| "MARK gain %%".format(v).postln });
		s.sync;
		s.queryAllNodes;
		s.bind { y = Synth(\player, [\buf, b.bufnum, \loop, 1]) };
		1.wait;
		"MARK nodes %% %%".format(x.nodeID, y.nodeID).postln;
		"MARK n_go %%".format(goes.asArray).postln;
		x.free;
		s.freeAll;
		s.sync;
		"MARK done".postln;
		0.exit;
	}
}, onFailure: { "MARK boot failed".postln; 1.exit });
)
"""


@unittest.skipUnless(shutil.which("sclang"), "needs sclang (supercollider-language)")
class Sclang(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.srv = Loopd("--root", self.dir.name, loops=1)

    def tearDown(self):
        self.srv.stop()
        self.dir.cleanup()

    def test_server_remote_session(self):
        srv, d = self.srv, self.dir.name
        write_wav16(os.path.join(d, "tone.wav"), [tone(440, 1.0, 0.3)])
        # A loop that sclang's s.freeAll must leave alone.
        write_wav16(os.path.join(d, "loop.wav"), [tone(220, 0.5, 0.2), tone(220, 0.5, 0.2)])
        me = "osc.udp://127.0.0.1:%d/" % srv.client.port
        srv.send("/sl/0/load_loop", os.path.join(d, "loop.wav"), me, "/err")
        srv.wait("/done", "/sl/0/load_loop", timeout=10)
        script = os.path.join(d, "session.scd")
        with open(script, "w") as f:
            f.write(SCLANG_SCRIPT % {"port": srv.udp_port, "dir": d})
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QTWEBENGINE_DISABLE_SANDBOX="1")
        r = subprocess.run(["sclang", script], capture_output=True, text=True, timeout=120, env=env, cwd=d)
        out = r.stdout + r.stderr
        marks = [l for l in out.splitlines() if l.startswith("MARK")]
        self.assertEqual(r.returncode, 0, out[-3000:])
        self.assertIn("MARK booted clientID 0", marks)
        self.assertIn("loopd: server process has maxLogins 32", out)
        self.assertIn("MARK read 48000", marks)                   # Buffer.read's action ran
        self.assertIn("MARK numFrames 48000 channels 1", marks)
        self.assertIn("MARK gain 0.25", marks)                    # .set, then .get (/s_get)
        ids = [m for m in marks if m.startswith("MARK nodes")][0].split()[2:]
        goes = [m for m in marks if m.startswith("MARK n_go")][0]
        for i in ids:
            self.assertIn(i, goes)                                # Synth and the s.bind one started
        self.assertIn("MARK done", marks)
        # s.queryAllNodes on a server at 127.0.0.1 is /g_dumpTree: loopd prints the tree.
        time.sleep(0.3)
        self.assertTrue(any(re.search(r"\b%s player" % ids[0], l) for l in srv.log), "\n".join(srv.log[-30:]))
        # No /fail but the SynthDef one (sclang sends its default SynthDefs).
        fails = [l for l in srv.log if "/fail " in l]
        self.assertTrue(fails, "sclang's /d_recv is refused")
        self.assertEqual([l for l in fails if "/d_recv" not in l and "/d_load" not in l], [])
        # s.freeAll left the loop playing where it was.
        self.assertIn(800, srv.request("/g_queryTree", 0, reply="/g_queryTree.reply"))
        url = "osc.udp://127.0.0.1:%d/" % srv.client.port
        srv.send("/sl/0/get", "loop_len", url, "/len")
        self.assertAlmostEqual(srv.wait("/len")[2], 0.5, places=3)
        srv.send("/sl/0/get", "state", url, "/st")
        self.assertEqual(srv.wait("/st")[2], 4.0)                 # playing


PD_PATCH = r"""#N canvas 0 0 700 500 12;
#X obj 20 20 loadbang;
#X msg 20 50 connect 127.0.0.1 %(port)d;
#X obj 20 300 netsend -u -b;
#X obj 20 340 oscparse;
#X obj 20 370 print REPLY;
#X obj 300 20 loadbang;
#X obj 300 50 delay 200;
#X obj 300 80 t b b b b;
#X msg 450 110 list float32;
#X obj 450 140 oscformat reply_format;
#X msg 400 110 1;
#X obj 400 170 oscformat notify;
#X msg 350 110 77 0 0;
#X obj 350 200 oscformat g_new;
#X obj 300 230 oscformat status;
#X obj 300 260 list prepend send;
#X obj 300 290 list trim;
#X obj 150 140 delay 1500;
#X msg 150 170 \; pd quit;
#X connect 0 0 1 0;
#X connect 1 0 2 0;
#X connect 2 1 3 0;
#X connect 3 0 4 0;
#X connect 5 0 6 0;
#X connect 5 0 17 0;
#X connect 6 0 7 0;
#X connect 7 3 8 0;
#X connect 8 0 9 0;
#X connect 7 2 10 0;
#X connect 10 0 11 0;
#X connect 7 1 12 0;
#X connect 12 0 13 0;
#X connect 7 0 14 0;
#X connect 9 0 15 0;
#X connect 11 0 15 0;
#X connect 13 0 15 0;
#X connect 14 0 15 0;
#X connect 15 0 16 0;
#X connect 16 0 2 0;
#X connect 17 0 18 0;
"""


@unittest.skipUnless(shutil.which("pd"), "needs Pd vanilla (puredata-core)")
class Pd(unittest.TestCase):
    def test_oscparse_reads_every_reply_in_float32_format(self):
        with tempfile.TemporaryDirectory() as d:
            srv = Loopd()
            try:
                patch = os.path.join(d, "client.pd")
                with open(patch, "w") as f:
                    f.write(PD_PATCH % {"port": srv.udp_port})
                r = subprocess.run(["pd", "-nogui", "-nosound", "-noprefs", patch], capture_output=True, text=True, timeout=30)
                out = r.stdout + r.stderr
                # [print] shows what [oscparse] made of each reply: "REPLY: list <address parts> <args>".
                replies = [l[len("REPLY: list "):].split() for l in out.splitlines() if l.startswith("REPLY: list ")]
                self.assertIn(["done", "/reply_format"], replies, out)
                self.assertIn(["done", "/notify", "0", "32"], replies, out)
                go = [r for r in replies if r[:2] == ["n_go", "77"]]
                self.assertEqual(len(go), 1, out)
                self.assertEqual(len(go[0]), 9, go)  # n_go id parent prev next isGroup head tail sampleTime
                self.assertGreater(float(go[0][8]), 0)
                status = [r for r in replies if r[0] == "status.reply"]
                self.assertEqual(len(status), 1, out)
                self.assertEqual(len(status[0]), 28, status)  # every field, none garbled
                self.assertEqual(status[0][8:10], ["48000", "48000"])  # nominal and actual rate: doubles before
                self.assertEqual(status[0][21], "null")
                self.assertNotIn("unknown tag", out)
                self.assertNotIn("error", out.lower())
            finally:
                srv.stop()


if __name__ == "__main__":
    unittest.main()
