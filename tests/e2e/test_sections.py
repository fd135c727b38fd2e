"""End-to-end: `loopd sections` (Crowdstream's struct_loader.py in C++) and /cue_section.

The material is made here: tracks with a click on every beat, a different timbre (click pitch)
per segment, allin1-style structure JSON whose segment boundaries lie a few milliseconds off the
beat, and a Rekordbox XML that overrides one track's BPM (by its percent-encoded Location) and
gives another its key (by Name). The expected CSV rows are written below from struct_loader's
rules, not from loopd's output; `aubio onset` judges where the clicks of the exports fall.
"""
import csv
import os
import subprocess
import tempfile
import unittest
import wave

import numpy as np

import oscutil
from test_osc import Loopd

LOOPD = os.environ.get("LOOPD_BIN", os.path.join(os.path.dirname(__file__), "../../build/server/loopd"))
RATE = 48000
TARGET = 122.0
OFF_BEAT = 0.007           # segment boundaries this far after their beat (snapping brings them back)
INTRO_BEATS, SECTION_BEATS, SECTIONS, TAIL_BEATS = 8, 8, 4, 2
TIMBRES = [700.0, 1300.0, 2100.0, 3400.0, 5200.0]  # click pitch: intro, then one per section


def beat_times(bpm):
    n = INTRO_BEATS + SECTION_BEATS * SECTIONS + TAIL_BEATS
    return [round(k * 60.0 / bpm, 3) for k in range(n)]


def make_track(path, bpm, rate=RATE):
    """Stereo 16-bit WAV, a 15 ms decaying sine click on every beat (pitch by segment)."""
    beats = beat_times(bpm)
    total = int((beats[-1] + 60.0 / bpm) * rate)
    x = np.zeros(total)
    n = int(0.015 * rate)
    env = np.exp(-np.arange(n) / (0.003 * rate))
    attack = np.random.default_rng(7).uniform(-1.0, 1.0, int(0.001 * rate))  # a broadband 1 ms attack
    for k, t in enumerate(beats):
        seg = 0 if k < INTRO_BEATS else min(1 + (k - INTRO_BEATS) // SECTION_BEATS, len(TIMBRES) - 1)
        i = int(round(t * rate))
        click = 0.6 * env * np.sin(2 * np.pi * TIMBRES[seg] * np.arange(n) / rate)
        click[: len(attack)] += 0.3 * attack
        x[i:i + n] += click[: len(x) - i]
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(pcm, 2).tobytes())


def structure(path, bpm, key=None, intro=True):
    beats = beat_times(bpm)
    labels = (["intro"] if intro else ["start"]) + ["verse", "chorus", "verse", "outro"][:SECTIONS]
    bounds = [0] + [INTRO_BEATS + SECTION_BEATS * i for i in range(SECTIONS + 1)]
    segs = [{"start": round(beats[a] + (OFF_BEAT if a else 0.0), 3),
             "end": round(beats[min(b, len(beats) - 1)] + OFF_BEAT, 3), "label": lab}
            for a, b, lab in zip(bounds, bounds[1:], labels)]
    doc = {"path": path, "bpm": bpm, "beats": beats, "downbeats": beats[::4],
           "beat_positions": [k % 4 + 1 for k in range(len(beats))], "segments": segs}
    if key is not None:
        doc["key"] = key
    return doc


def read_wav(path):
    with wave.open(path, "rb") as w:
        rate, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = w.readframes(n)
    assert width == 2, path
    return rate, np.frombuffer(raw, dtype="<i2").reshape(-1, ch)


def aubio_onsets(path):
    """Onset times in seconds, by `aubio onset` (high-frequency content, 16-sample hop). The
    silence gate (-35 dBFS) keeps it from taking a stretcher's pre-echo (R3: up to 5 ms before a
    click, 40 dB below it) for the click."""
    out = subprocess.run(["aubio", "onset", "-i", path, "-H", "16", "-B", "512", "-m", "hfc", "-s", "-35", "-T", "samples"],
                         capture_output=True, text=True, check=True).stdout.split()
    return np.array([float(t) for t in out]) / RATE


def pyfloat(v):
    return repr(float(v))


def mmss(s):
    m = int(s // 60)
    return "%d:%05.2f" % (m, s - 60 * m)


class SectionExporter(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.dir = cls.tmp.name
        cls.audio = os.path.join(d, "audio")
        cls.struct = os.path.join(cls.audio, "struct")  # Crowdstream's stems/dj/struct beside stems/dj/*.wav
        os.makedirs(cls.audio)
        os.makedirs(cls.struct)
        import json
        # name, JSON bpm, true bpm (audio), JSON key, intro, audio present
        tracks = [("a_120", 120.0, 120.0, "Gm", True, True),
                  ("b 123", 150.0, 123.0, None, True, True),     # Rekordbox says 123 (Location match)
                  ("c_121", 121.0, 121.0, None, True, True),     # Rekordbox gives the key 6A (Name match)
                  ("d_122", 122.0, 122.0, None, False, True),    # no intro: skipped
                  ("e_122", 122.0, 122.0, None, True, False),    # no audio file: skipped
                  ("f_zero", 0.0, 120.0, None, True, True),      # bpm 0: skipped
                  ("g_90", 90.0, 90.0, None, True, True)]        # outside the search: no row
        for name, json_bpm, true_bpm, key, intro, present in tracks:
            if present:
                make_track(os.path.join(cls.audio, name + ".wav"), true_bpm)
            doc = structure("/music/dj/%s.wav" % name, true_bpm, key, intro)
            doc["bpm"] = json_bpm
            with open(os.path.join(cls.struct, name.replace(" ", "_") + ".json"), "w") as f:
                json.dump(doc, f)
        with open(os.path.join(cls.struct, "h_broken.json"), "w") as f:
            f.write('{"path": "/music/dj/h.wav", "bpm": 12')
        cls.xml = os.path.join(d, "rekordbox.xml")
        with open(cls.xml, "w") as f:
            f.write("""<?xml version="1.0" encoding="UTF-8"?>
<DJ_PLAYLISTS Version="1.0.0"><PRODUCT Name="rekordbox" Version="6.8.5" Company="AlphaTheta"/>
<COLLECTION Entries="3">
 <TRACK TrackID="1" Name="b 123" AverageBpm="123.00" TotalTime="21" Tonality="" Location="file://localhost/music/dj/b%20123.wav">
  <TEMPO Inizio="0.000" Bpm="123.00" Metro="4/4" Battito="1"/></TRACK>
 <TRACK TrackID="2" Name="c_121" AverageBpm="90.00" TotalTime="21" Tonality="6A" Location="file://localhost/elsewhere/other.wav"/>
 <TRACK TrackID="3" Name="nowhere" AverageBpm="128.00" TotalTime="300" Tonality="Am" Location="file://localhost/x/nowhere.wav"/>
</COLLECTION></DJ_PLAYLISTS>
""")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_sections(self, *args, out="run"):
        parts = os.path.join(self.dir, out)
        csv_path = os.path.join(self.dir, out + ".csv")
        p = subprocess.run([LOOPD, "sections", self.struct, "--bpm", str(TARGET), "--rekordbox-xml", self.xml,
                            "--audio-dir", self.audio, "--n-sections", "2", "--parts-dir", parts, "--csv-out", csv_path, *args],
                           capture_output=True, text=True, timeout=300)
        rows = []
        if os.path.exists(csv_path):
            with open(csv_path, newline="") as f:
                rows = list(csv.DictReader(f))
        return p, rows, parts

    def expected(self, name, bpm, key):
        """struct_loader's rules for a track made by make_track/structure, cues on the beat."""
        p = 60.0 / bpm
        beats = beat_times(bpm)
        ini = beats[INTRO_BEATS]                             # end of the intro (snapped back to its beat)
        begin = beats[INTRO_BEATS + SECTION_BEATS]           # the 2nd segment from the intro's end
        end = beats[INTRO_BEATS + 2 * SECTION_BEATS]
        speed = TARGET / bpm
        part = os.path.join(self.dir, "run", name + "_sectioned.wav")
        return {"path": "/music/dj/%s.wav" % name, "bpm": pyfloat(bpm), "key": key, "target_bpm": pyfloat(TARGET),
                "speed": pyfloat(speed), "ini_cue": pyfloat(ini), "begin_cue": pyfloat(begin), "end_cue": pyfloat(end),
                "begin_cue_adj": pyfloat((begin - ini) / speed), "end_cue_adj": pyfloat((end - ini) / speed),
                "duration_orig": mmss(end - ini), "part_file_orig": os.path.join(self.dir, "run", "orig", name + "_sectioned.wav"),
                "part_file": part, "status": "ok"}, p

    def test_selection_csv_cut_points_and_clicks_on_the_target_grid(self):
        proc, rows, parts = self.run_sections()
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("nowhere", proc.stderr)  # the XML track that matches no JSON is reported
        # stdout: the selection, as the original prints it (by path; tracks with cues).
        self.assertEqual(proc.stdout.split("\n")[:-1], ["/music/dj/a_120.wav", "/music/dj/b 123.wav", "/music/dj/c_121.wav",
                                                         "/music/dj/e_122.wav"])
        ok = [r for r in rows if r["status"] == "ok"]
        skipped = {r["path"]: r["status"] for r in rows if r["status"] != "ok"}
        self.assertEqual(list(rows[0].keys()), ["path", "bpm", "key", "target_bpm", "speed", "ini_cue", "begin_cue", "end_cue",
                                                "begin_cue_adj", "end_cue_adj", "duration_orig", "duration_sectioned",
                                                "part_file_orig", "part_file", "status"])
        self.assertEqual(len(ok), 3, rows)
        self.assertIn("no intro", skipped["/music/dj/d_122.wav"])
        self.assertIn("audio file not found", skipped["/music/dj/e_122.wav"])
        self.assertIn("not a tempo", skipped["/music/dj/f_zero.wav"])
        self.assertTrue(any("h_broken.json" in p and "JSON" in s for p, s in skipped.items()), skipped)
        self.assertNotIn("/music/dj/g_90.wav", skipped)
        for row, (name, bpm, key) in zip(ok, [("a_120", 120.0, "Gm"), ("b 123", 123.0, ""), ("c_121", 121.0, "6A")]):
            want, period = self.expected(name, bpm, key)
            got = dict(row)
            dur_sectioned = got.pop("duration_sectioned")
            for k in ("speed", "begin_cue_adj", "end_cue_adj"):
                self.assertAlmostEqual(float(got.pop(k)), float(want.pop(k)), places=12, msg=name + " " + k)
            self.assertEqual(got, want)
            # The unstretched cut: exactly the file's frames from the intro's end.
            rate, src = read_wav(os.path.join(self.audio, name + ".wav"))
            _, orig = read_wav(row["part_file_orig"])
            a, b = round(float(row["ini_cue"]) * rate), round(float(row["end_cue"]) * rate)
            self.assertTrue(np.array_equal(orig, src[a:b]), name)
            # The stretched cut: duration_orig / speed (to the frame: within one beat, as asked),
            # and the CSV's duration_sectioned is its length.
            _, part = read_wav(row["part_file"])
            speed = TARGET / bpm
            self.assertEqual(len(part), round((b - a) / speed))
            self.assertEqual(dur_sectioned, mmss(len(part) / rate))
            self.assert_clicks_on_grid(row, bpm)

    def assert_clicks_on_grid(self, row, bpm):
        """The clicks of the stretched cut sit on the target tempo's grid from frame 0. Each click
        is judged against the same click in the unstretched cut (whose clicks are on the original
        beats), so the detector's own delay, which differs with the click's timbre, cancels."""
        beats_in = int(round((float(row["end_cue"]) - float(row["ini_cue"])) * bpm / 60.0))
        on_orig = aubio_onsets(row["part_file_orig"])
        on = aubio_onsets(row["part_file"])
        self.assertEqual(len(on_orig), beats_in, on_orig)
        self.assertEqual(len(on), beats_in, (row["path"], on))
        late_orig = on_orig - (np.array(beat_times(bpm)[INTRO_BEATS:INTRO_BEATS + beats_in]) - float(row["ini_cue"]))
        late = on - np.arange(beats_in) * 60.0 / TARGET
        worst = float(np.max(np.abs(late - late_orig)))
        self.assertLess(worst, 0.002, (row["path"], worst, late - late_orig))
        return worst

    def test_wsola_keeps_the_grid_and_rb2_keeps_the_clicks(self):
        for method in ("wsola", "rb2"):
            p, rows, _ = self.run_sections("--key", "Gm", "--stretch-method", method, out="m_" + method)
            self.assertEqual(p.returncode, 0, p.stderr)
            ok = [r for r in rows if r["status"] == "ok"]
            # Gm: a_120 by its JSON, c_121 by Rekordbox's 6A.
            self.assertEqual([r["path"] for r in ok], ["/music/dj/a_120.wav", "/music/dj/c_121.wav"], method)
            _, part = read_wav(ok[0]["part_file"])
            self.assertEqual(len(part), round(8.0 * RATE / (TARGET / 120.0)), method)
            if method == "wsola":
                self.assert_clicks_on_grid(ok[0], 120.0)
            else:
                # R2 ("faster") smears a broadband click 2-6 ms early: one onset per beat is what
                # it keeps (its default options heard each click twice), the grid is R3's and
                # WSOLA's to keep.
                self.assertEqual(len(aubio_onsets(ok[0]["part_file"])), 16)

    def test_keys_in_any_spelling_jobs_and_exit_codes(self):
        base, _, _ = self.run_sections(out="k1")
        self.assertEqual(base.returncode, 0, base.stderr)
        # "G minor" keeps a_120 (Gm in its JSON) and c_121 (6A from Rekordbox: Camelot for G minor).
        p, rows, parts = self.run_sections("--key", "G minor", "--jobs", "2", out="k2")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([r["path"] for r in rows if r["status"] == "ok"], ["/music/dj/a_120.wav", "/music/dj/c_121.wav"])
        # Two jobs write what one job writes, byte for byte.
        for name in ("a_120", "c_121"):
            with open(os.path.join(self.dir, "k1", name + "_sectioned.wav"), "rb") as f1, \
                    open(os.path.join(parts, name + "_sectioned.wav"), "rb") as f2:
                self.assertEqual(f1.read(), f2.read(), name)
        # On a terminal (script(1) gives it one) stderr carries a progress bar redrawn in place.
        import shlex
        cmd = " ".join(shlex.quote(a) for a in [LOOPD, "sections", self.struct, "--bpm", str(TARGET), "--audio-dir", self.audio,
                                                 "--n-sections", "2", "--parts-dir", os.path.join(self.dir, "tty"),
                                                 "--csv-out", os.path.join(self.dir, "tty.csv")])
        p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertRegex(p.stdout.decode(errors="replace"), r"\r\[#+\.*\] +\d+%  \d/3 tracks")
        self.assertNotIn("\r[", base.stderr)  # not on a pipe: a line per track
        self.assertIn("[1/", base.stderr)
        # Nothing to export: 1; wrong arguments: 2; the struct files are never written.
        before = {f: os.path.getmtime(os.path.join(self.struct, f)) for f in os.listdir(self.struct)}
        p, rows, _ = self.run_sections("--key", "F#", out="k3")
        self.assertEqual(p.returncode, 1, p.stderr)
        p = subprocess.run([LOOPD, "sections", os.path.join(self.dir, "no-such-dir"), "--bpm", "120"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("does not exist", p.stderr)
        p = subprocess.run([LOOPD, "sections", self.struct, "--stretch-method", "ffmpeg"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(before, {f: os.path.getmtime(os.path.join(self.struct, f)) for f in os.listdir(self.struct)})

    def test_cue_section_on_a_deck_plays_the_section_at_the_clock_tempo(self):
        srv = Loopd("--root", self.dir, "--bpm", str(TARGET))
        try:
            rec = os.path.join(self.dir, "deck.wav")
            srv.send("/cue_section", "A", os.path.join(self.struct, "a_120.json"), TARGET, 2)
            srv.wait("/done", "/cue_section", timeout=60)
            srv.send("/b_query", 100)
            info = srv.wait("/b_info", 100)
            want = round((round(12.0 * RATE) - round(4.0 * RATE)) / (TARGET / 120.0))
            self.assertEqual(info[1], want)
            srv.request("/rec_start", rec)
            srv.request("/start_group", 0.0, "A", timeout=10)
            import time
            time.sleep(3.0)
            srv.request("/rec_stop", reply="/done", first="/rec_stop")
            fails = [a for p, a in srv.replies if p == "/fail"]
            self.assertEqual(fails, [])
            # A section that does not exist, a missing file: /fail with the reason.
            srv.send("/cue_section", "B", os.path.join(self.struct, "d_122.json"), TARGET, 2)
            self.assertIn("no intro", srv.wait("/fail", "/cue_section", timeout=30)[1])
            srv.send("/cue_section", "B", os.path.join(self.struct, "e_122.json"), TARGET, 2)
            self.assertIn("audio file not found", srv.wait("/fail", "/cue_section", timeout=30)[1])
            # A 44.1 kHz file on the 48 kHz server, slowed to 70 BPM: resampled and stretched.
            make_track(os.path.join(self.dir, "slow44.wav"), 120.0, rate=44100)
            import json
            with open(os.path.join(self.dir, "slow44.json"), "w") as f:
                json.dump(structure("/elsewhere/slow44.wav", 120.0), f)
            srv.send("/cue_section", "C", os.path.join(self.dir, "slow44.json"), 70.0, 2)
            srv.wait("/done", "/cue_section", timeout=60)
            srv.send("/b_query", 2100)
            frames = srv.wait("/b_info", 2100)[1]
            self.assertAlmostEqual(frames, 8.0 * RATE * 120.0 / 70.0, delta=60)
            srv.send("/cue_section", "Q", os.path.join(self.struct, "a_120.json"))
            self.assertIn("deck", srv.wait("/fail", "/cue_section", timeout=5)[1])
        finally:
            srv.stop()
        # The deck's clicks: one every 60/122 s (the clock's tempo: the section plays at rate 1).
        on = aubio_onsets(rec)
        self.assertGreaterEqual(len(on), 5, on)
        gaps = np.diff(on[:6])
        self.assertLess(float(np.max(np.abs(gaps - 60.0 / TARGET))), 0.002, gaps)


if __name__ == "__main__":
    unittest.main()
