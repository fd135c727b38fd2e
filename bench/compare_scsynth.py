#!/usr/bin/python3
"""Offline render speed of loopd against SuperCollider's scsynth on the same work:
N looping stereo players (scsynth: PlayBuf.ar(2), which interpolates cubically) in one group,
48 kHz, block 64, for SECONDS of audio, rendered with each server's non-real-time mode.
Prints the median real-time factor of each and their ratio, for the whole process and for the
rendering alone (less each server's time for the same score over 0.1 s: start-up, file set-up),
by wall-clock time and by CPU time (user + system, all threads: steadier on a shared machine).
The two servers alternate run by run.

    bench/compare_scsynth.py [--players 64] [--seconds 60] [--runs 5] [--rates 1,1.01] [--loopd build/server/loopd]

Needs Debian's supercollider-server (installed here if missing; it is not a test dependency).
The SynthDef is written directly in SCgf v2 form, so sclang is not needed.
"""
import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/e2e"))
import oscutil  # noqa: E402

LOOPD = None


def pstring(s):
    b = s.encode()
    return struct.pack(">B", len(b)) + b


def playbuf_synthdef():
    """SynthDef "pb" { |buf = 0, rate = 1| Out.ar(0, PlayBuf.ar(2, buf, rate, 1, 0, 1)) }."""
    consts = [0.0, 1.0]
    out = b"SCgf" + struct.pack(">iH", 2, 1)
    out += pstring("pb")
    out += struct.pack(">i", len(consts)) + b"".join(struct.pack(">f", c) for c in consts)
    out += struct.pack(">i", 2) + struct.pack(">ff", 0.0, 1.0)                     # params
    out += struct.pack(">i", 2) + pstring("buf") + struct.pack(">i", 0) + pstring("rate") + struct.pack(">i", 1)
    ugens = []
    # Control.kr: 2 outputs
    ugens.append(pstring("Control") + struct.pack(">bi i h", 1, 0, 2, 0) + struct.pack(">bb", 1, 1))
    # PlayBuf.ar(2): bufnum, rate, trigger=1, startPos=0, loop=1, doneAction=0
    inputs = [(0, 0), (0, 1), (-1, 1), (-1, 0), (-1, 1), (-1, 0)]
    ugens.append(pstring("PlayBuf") + struct.pack(">bi i h", 2, len(inputs), 2, 0)
                 + b"".join(struct.pack(">ii", a, b) for a, b in inputs) + struct.pack(">bb", 2, 2))
    # Out.ar(0, [pb0, pb1])
    inputs = [(-1, 0), (1, 0), (1, 1)]
    ugens.append(pstring("Out") + struct.pack(">bi i h", 2, len(inputs), 0, 0)
                 + b"".join(struct.pack(">ii", a, b) for a, b in inputs))
    out += struct.pack(">i", len(ugens)) + b"".join(ugens)
    out += struct.pack(">h", 0)                                                   # variants
    return out


def write_noise(path, seconds=10, rate=48000):
    import random
    rnd = random.Random(5)
    n = seconds * rate
    data = struct.pack("<%df" % (2 * n), *[rnd.uniform(-0.1, 0.1) for _ in range(2 * n)])
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<IHHIIHH", 16, 3, 2, rate, rate * 8, 8, 32))
        f.write(b"data" + struct.pack("<I", len(data)) + data)


def run_once(cmd):
    """(wall seconds, CPU seconds: user + system of the process and its threads)."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        t = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            out.seek(0)
            raise SystemExit("failed: %s\n%s" % (" ".join(cmd), out.read().decode(errors="replace")))
    return t, usage.ru_utime + usage.ru_stime


def scores(d, synthdef, noise, players, rate, seconds):
    """The two servers' scores for `players` at `rate` over `seconds`."""
    sc_score, ld_score = os.path.join(d, "sc.osc"), os.path.join(d, "ld.osc")
    sc_msgs = [oscutil.message("/d_load", synthdef), oscutil.message("/b_allocRead", 0, noise),
               oscutil.message("/g_new", 1, 0, 0)]
    sc_msgs += [oscutil.message("/s_new", "pb", 1000 + i, 1, 1, "buf", 0.0, "rate", rate) for i in range(players)]
    oscutil.write_score(sc_score, [(0.0, sc_msgs), (seconds, [oscutil.message("/c_set", 0, 0.0)])])
    ld_msgs = [oscutil.message("/b_allocRead", 0, noise), oscutil.message("/g_new", 1, 0, 0)]
    ld_msgs += [oscutil.message("/s_new", "player", 1000 + i, 1, 1, "buf", 0, "loop", 1, "rate", rate) for i in range(players)]
    oscutil.write_score(ld_score, [(0.0, ld_msgs), (seconds, [oscutil.message("/sync", 0)])])
    return (["scsynth", "-N", sc_score, "_", os.path.join(d, "sc.wav"), "48000", "WAV", "float", "-o", "2", "-z", "64"],
            [LOOPD, "--nrt", ld_score, "_", os.path.join(d, "ld.wav"), "-z", "64", "--log-level", "warn"])


def main():
    global LOOPD
    ap = argparse.ArgumentParser()
    ap.add_argument("--players", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rates", default="1,1.01")
    ap.add_argument("--loopd", default=os.path.join(os.path.dirname(__file__), "../build/server/loopd"))
    a = ap.parse_args()
    LOOPD = a.loopd
    if not shutil.which("scsynth"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "supercollider-server"],
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    with tempfile.TemporaryDirectory() as d:
        noise = os.path.join(d, "noise.wav")
        write_noise(noise)
        synthdef = os.path.join(d, "pb.scsyndef")
        with open(synthdef, "wb") as f:
            f.write(playbuf_synthdef())
        for rate in (float(r) for r in a.rates.split(",")):
            # The servers alternate run by run (a noisy machine slows both alike). Each is also
            # timed on the same score with 0.1 s of audio: its start-up and file set-up, which
            # the "rendering" figures leave out.
            # Wall time is what the real-time factor means; CPU time (user + system, every
            # thread) is what the same work costs, and moves less when the machine is shared.
            sc_t, ld_t, sc_0, ld_0 = [], [], [], []
            for _ in range(a.runs):
                sc, ld = scores(d, synthdef, noise, a.players, rate, 0.1)
                sc_0.append(run_once(sc))
                ld_0.append(run_once(ld))
                sc, ld = scores(d, synthdef, noise, a.players, rate, a.seconds)
                sc_t.append(run_once(sc))
                ld_t.append(run_once(ld))
            print("rate %.2f, %d players, %.0f s, medians of %d alternating runs:" % (rate, a.players, a.seconds, a.runs))
            for k, what in ((0, "wall"), (1, "CPU")):
                sc_m, ld_m = statistics.median(t[k] for t in sc_t), statistics.median(t[k] for t in ld_t)
                sc_r = statistics.median(t[k] - s[k] for t, s in zip(sc_t, sc_0))
                ld_r = statistics.median(t[k] - s[k] for t, s in zip(ld_t, ld_0))
                print("  %-4s whole process: scsynth %.1fx real time, loopd %.1fx, loopd/scsynth %.2f"
                      % (what, a.seconds / sc_m, a.seconds / ld_m, sc_m / ld_m))
                print("  %-4s rendering (start-up %.2f s / %.2f s left out): scsynth %.1fx, loopd %.1fx, loopd/scsynth %.2f"
                      % (what, statistics.median(s[k] for s in sc_0), statistics.median(s[k] for s in ld_0),
                         a.seconds / sc_r, a.seconds / ld_r, sc_r / ld_r))


if __name__ == "__main__":
    main()
