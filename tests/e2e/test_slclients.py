"""End-to-end: SooperLooper's own clients (Debian sooperlooper) drive loopd unchanged.

  SlGui      slgui -N under Xvfb: it connects (its /ping with the id flag), shows the loop strip,
             a click on record, a second click a second later, gives a loop whose loop_len loopd
             reports; the screen before and after differ; after 30 s it is still connected (its
             keep-alive /ping ... /alive_resp answered) and a click on mute mutes the loop.
  SlConsole  slconsole in tmux: record, overdub, undo and save ('a', which sends
             /sl/-1/save_loop) with two loops: two numbered files that hold the loops. On JACK
             (LOOPD_JACK=1, scripts/test starts jackd) loopd's outputs feed its inputs, so the
             loops hold the tone a player plays; on the null driver they hold silence of the
             right length.

The real `sooperlooper` engine cannot run here (it aborts without /dev/snd/seq); the clients
are what users bring. Run with Debian's /usr/bin/python3. LOOPD_BIN names the binary.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import liblo

import oscutil
from test_osc import Loopd, tone, write_wav16

OFF, RECORDING, PLAYING, OVERDUBBING, MUTED = 0, 2, 4, 5, 10


def sl_get(srv, loop, ctrl):
    url = "osc.udp://127.0.0.1:%d/" % srv.client.port
    path = "/g_%s_%d" % (ctrl, time.monotonic_ns())
    srv.send("/sl/%d/get" % loop, ctrl, url, path)
    return srv.wait(path)[2]


class Xvfb:
    """A virtual X display of our own, stopped by PID."""

    def __init__(self):
        r, w = os.pipe()
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                                     pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        with os.fdopen(r) as f:
            self.display = ":" + f.readline().strip()

    def env(self, **extra):
        return dict(os.environ, DISPLAY=self.display, **extra)

    def screenshot(self, path):
        subprocess.run(["import", "-window", "root", path], env=self.env(), check=True, timeout=20)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def pixels_differing(a, b):
    r = subprocess.run(["compare", "-metric", "AE", a, b, "null:"], capture_output=True, text=True)
    return int(float(r.stderr.split()[0]))


@unittest.skipUnless(shutil.which("slgui") and shutil.which("Xvfb") and shutil.which("xdotool") and shutil.which("import"),
                     "needs slgui (sooperlooper), Xvfb, xdotool and ImageMagick")
class SlGui(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.srv = Loopd("--root", self.dir.name, loops=1)
        self.x = Xvfb()
        # A home of its own: no saved preferences change what it does.
        self.gui = subprocess.Popen(["slgui", "-N", "-H", "127.0.0.1", "-P", str(self.srv.udp_port)],
                                    env=self.x.env(HOME=self.dir.name), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def tearDown(self):
        self.gui.kill()
        self.gui.wait(10)
        self.x.stop()
        self.srv.stop()
        self.dir.cleanup()

    def click(self, x, y):
        subprocess.run(["xdotool", "mousemove", "--window", self.window, str(x), str(y), "click", "1"], env=self.x.env(), check=True)

    def test_connects_records_and_stays_connected(self):
        r = subprocess.run(["xdotool", "search", "--sync", "--name", "^SooperLooper"], env=self.x.env(), capture_output=True, text=True, timeout=30)
        self.window = r.stdout.split()[0]
        time.sleep(3)  # it connects and asks for every control
        before = os.path.join(self.dir.name, "before.png")
        self.x.screenshot(before)
        self.assertEqual(sl_get(self.srv, 0, "state"), OFF)
        # The loop strip's record button (slgui 1.7.8's default layout, relative to its window).
        self.click(118, 101)
        time.sleep(1.0)
        self.assertEqual(sl_get(self.srv, 0, "state"), RECORDING)
        self.click(118, 101)
        time.sleep(0.5)
        self.assertEqual(sl_get(self.srv, 0, "state"), PLAYING)
        length = sl_get(self.srv, 0, "loop_len")
        self.assertGreater(length, 0.8)
        self.assertLess(length, 2.5)
        after = os.path.join(self.dir.name, "after.png")
        self.x.screenshot(after)
        changed = pixels_differing(before, after)
        print("\nslgui: loop of %.2f s recorded by two clicks; %d pixels changed on screen" % (length, changed))
        self.assertGreater(changed, 300)  # "off" -> "playing", the time, tot/cyc
        # 30 s later (slgui pings every few seconds and drops a server that does not answer)
        # it is still connected: a click on mute reaches loopd.
        time.sleep(30)
        self.assertIsNone(self.gui.poll())
        self.click(832, 97)  # mute
        time.sleep(0.5)
        self.assertEqual(sl_get(self.srv, 0, "state"), MUTED)
        fails = [l for l in self.srv.log if "/fail " in l]
        self.assertEqual(fails, [])


@unittest.skipUnless(shutil.which("slconsole") and shutil.which("tmux"), "needs slconsole (sooperlooper) and tmux")
class SlConsole(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.jack = bool(os.environ.get("LOOPD_JACK"))
        self.srv = Loopd("--root", self.dir.name, "--buffer-size", "256", driver="jack" if self.jack else "null", loops=2)
        self.session = "loopd-slc-%d" % os.getpid()

    def tearDown(self):
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)
        self.srv.stop()
        self.dir.cleanup()

    def keys(self, *k):
        subprocess.run(["tmux", "send-keys", "-t", self.session, *k], check=True)

    def screen(self):
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True, text=True).stdout

    def test_record_overdub_undo_save(self):
        srv = self.srv
        if self.jack:
            # loopd's outputs into its inputs, and a player: the loops record what it plays.
            for c in (0, 1):
                subprocess.run(["jack_connect", "loopd:outport %d" % c, "loopd:inport %d" % c], check=True)
            write_wav16(os.path.join(self.dir.name, "src.wav"), [tone(220, 3.0, 0.3), tone(220, 3.0, 0.3)])
            srv.request("/b_allocRead", 1, os.path.join(self.dir.name, "src.wav"))
            srv.send("/s_new", "player", 100, 1, 0, "buf", 1, "loop", 1)
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "120", "-y", "40",
                        "slconsole -H 127.0.0.1 -P %d" % srv.udp_port], check=True)
        time.sleep(1.5)
        self.keys("r")                    # /sl/-1/down record: both loops
        time.sleep(1.0)
        self.keys("r")
        time.sleep(0.5)
        self.assertEqual([sl_get(srv, i, "state") for i in (0, 1)], [PLAYING, PLAYING], self.screen())
        self.keys("o")                    # overdub on and off
        time.sleep(0.5)
        self.assertEqual(sl_get(srv, 0, "state"), OVERDUBBING)
        self.keys("o")
        time.sleep(0.3)
        self.assertEqual(sl_get(srv, 0, "undo_depth"), 2.0)
        self.keys("u")                    # undo the overdub
        time.sleep(0.3)
        self.assertEqual(sl_get(srv, 0, "undo_depth"), 1.0)
        length = sl_get(srv, 0, "loop_len")
        take = os.path.join(self.dir.name, "take.wav")
        self.keys("a")                    # save: it asks for a file name
        time.sleep(0.3)
        self.assertIn("Filename to save loop to", self.screen())
        self.keys(take, "Enter")
        files = [os.path.join(self.dir.name, "take_loop_%02d.wav" % i) for i in (0, 1)]
        deadline = time.time() + 10
        while time.time() < deadline and not all(os.path.exists(f) for f in files):
            time.sleep(0.1)
        time.sleep(0.5)
        for f in files:
            rate, ch, frames, _ = oscutil.read_wav(f)
            self.assertEqual((rate, ch), (48000, 2))
            self.assertAlmostEqual(len(frames) / 48000.0, length, delta=2 / 48000.0)
            if self.jack:
                left = [v[0] for v in frames]
                rms = (sum(v * v for v in left) / len(left)) ** 0.5
                self.assertGreater(rms, 0.1, f)  # the player's tone
        print("\nslconsole: two loops of %.2f s recorded, overdubbed, undone and saved as %s" %
              (length, ", ".join(os.path.basename(f) for f in files)))
        self.assertEqual([l for l in srv.log if "/fail " in l], [])


if __name__ == "__main__":
    unittest.main()
