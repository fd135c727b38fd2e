#!/usr/bin/python3
"""Soak test (not a CI test): a busy scene on a real-time JACK dummy server for a long time.

24 looping players in one group with an LFO filter and a reverb, a quarter of them rb2 and a
quarter wsola, all following the clock while /dance/total_movement moves the tempo (a message
every 50 ms); node churn (a player replaced every 2 s), buffers reloaded, looper hits, a steady
stream of /n_set. Every 10 s it prints loopd's RSS, xruns, stretch underruns, dropped commands
and the /fail count; at the end, a summary.

  scripts/soak.py [--minutes 30] [--no-churn] [--players 24] [--period 256] [--loopd build/server/loopd]

It starts its own jackd (-n loopd-soak, real-time where permitted) and stops it at the end.
"""
import argparse
import math
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave

import liblo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_loop(path, seed, seconds=4.0, rate=48000):
    """A 120 BPM drum-like loop: a decaying noise burst and a pitched thump on every beat."""
    rng = random.Random(seed)
    n = int(seconds * rate)
    beat = rate // 2
    pitch = 60 + 40 * (seed % 5)
    frames = bytearray()
    for i in range(n):
        t = i % beat
        env = math.exp(-t / (0.03 * rate))
        v = 0.3 * env * (rng.random() * 2 - 1) + 0.3 * math.exp(-t / (0.1 * rate)) * math.sin(2 * math.pi * pitch * i / rate)
        s = int(max(-1, min(1, v)) * 32767)
        frames += struct.pack("<hh", s, s)
    with wave.open(path, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--players", type=int, default=24)
    ap.add_argument("--period", type=int, default=256)
    ap.add_argument("--no-churn", action="store_true")
    ap.add_argument("--no-movement", action="store_true", help="hold the tempo (no /dance/total_movement)")
    ap.add_argument("--loopd", default=os.path.join(ROOT, "build/server/loopd"))
    ap.add_argument("--stretch-threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--methods", default="", help="e.g. rb2:6,wsola:6,rate:12 (default: a quarter rb2, a quarter wsola)")
    ap.add_argument("--report", type=float, default=10.0, help="seconds between status lines")
    ap.add_argument("--log", default="", help="keep loopd's log in this file")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    name = "loopd-soak"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name)
    tmp = tempfile.TemporaryDirectory()
    files = []
    for k in range(6):
        p = os.path.join(tmp.name, "loop%d.wav" % k)
        write_loop(p, k)
        files.append(p)

    jack = None
    for mode in ("--realtime", "--no-realtime"):
        jack = subprocess.Popen(["jackd", "-n", name, mode, "-d", "dummy", "--rate", "48000", "--period", str(args.period)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        if subprocess.run(["jack_wait", "-w", "-t", "10"], env=env, capture_output=True).returncode == 0 and jack.poll() is None:
            print("jackd %s, period %d" % (mode, args.period))
            break
        jack.kill()
        jack.wait()
    log = open(args.log or os.path.join(tmp.name, "loopd.log"), "w")
    cmd = [args.loopd, "--driver", "jack", "-u", "0", "-t", "-1", "--root", tmp.name, "--buffer-size", str(args.period),
           "--loops", "1", "--stretch-threads", str(args.stretch_threads)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    port = None
    for line in proc.stderr:
        log.write(line)
        m = re.search(r"OSC udp [\d.]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    threading.Thread(target=lambda: [log.write(l) for l in proc.stderr], daemon=True).start()
    addr = liblo.Address("127.0.0.1", port)
    client = liblo.Server()
    replies = []
    fails = [0]

    def on_reply(path, a):
        if path == "/fail":
            fails[0] += 1
            if fails[0] <= 10:
                print("  /fail", a)
        else:
            replies.append((path, a))
    client.add_method(None, None, on_reply)
    lock = threading.Lock()

    def send(path, *a):
        with lock:
            client.send(addr, path, *a)

    def pump(seconds):
        end = time.time() + seconds
        while time.time() < end:
            client.recv(5)

    for b, f in enumerate(files):
        send("/b_allocRead", b + 1, f)
    send("/sync", 1)
    pump(2.0)
    send("/g_new", 1, 0, 0)
    send("/s_new", "filter", 2, 1, 1, "mode", "lp", "cutoffHz", 2000.0, "lfoDepthOctaves", 2.0, "lfoRateHz", 0.25)
    send("/s_new", "reverb", 3, 1, 1, "mix", 0.2)
    if args.methods:
        methods = [m for part in args.methods.split(",") for m in [part.split(":")[0]] * int(part.split(":")[1])]
    else:
        methods = ["rb2"] * (args.players // 4) + ["wsola"] * (args.players // 4)
        methods += ["rate"] * (args.players - len(methods))
    nodes = {}

    def new_player(node, method):
        send("/s_new", "player", node, 0, 1, "buf", rng.randint(1, len(files)), "loop", 1, "follow", 1, "bpm", 120.0,
             "stretch", method, "gain", 0.04, "startFrac", rng.random() * 0.9)
        nodes[node] = method
    for k, m in enumerate(methods):
        new_player(1000 + k, m)
    send("/notify", 1)

    stop = threading.Event()

    def movement():
        v = 0.1
        while not stop.is_set():
            v = min(0.6, max(0.0, v + rng.uniform(-0.02, 0.02)))
            send("/dance/total_movement", v)
            time.sleep(0.05)
    if not args.no_movement:
        threading.Thread(target=movement, daemon=True).start()

    pid = proc.pid
    start = time.time()
    next_churn = next_reload = next_hit = next_set = next_report = start
    hits = ["record", "record", "overdub", "overdub", "undo", "redo"]
    hit_k = 0
    next_id = 2000
    rows = []
    print("%7s %8s %7s %10s %8s %6s %7s %6s %5s" % ("time", "rss MB", "xruns", "underruns", "dropped", "fails", "cpu%", "peak%", "shed"))
    while time.time() - start < args.minutes * 60:
        now = time.time()
        if not args.no_churn and now >= next_churn:
            old = rng.choice(list(nodes))
            method = nodes.pop(old)
            send("/n_free", old)
            new_player(next_id, method)
            next_id += 1
            next_churn = now + 2.0
        if not args.no_churn and now >= next_reload:
            b = rng.randint(1, len(files))
            send("/b_allocRead", b, files[rng.randrange(len(files))])
            next_reload = now + 10.0
        if now >= next_hit:
            send("/sl/0/hit", hits[hit_k % len(hits)])
            hit_k += 1
            next_hit = now + 4.0
        if now >= next_set:
            send("/n_set", rng.choice(list(nodes)), "gain", rng.uniform(0.02, 0.05))
            next_set = now + 0.05
        if now >= next_report:
            replies.clear()
            send("/status")
            pump(0.2)
            st = [a for p, a in replies if p == "/status.reply"]
            if st:
                s = st[-1]
                row = (now - start, rss_mb(pid), s[10], s[21], s[12], fails[0], s[5], s[6], s[24] if len(s) > 24 else 0)
                rows.append(row)
                print("%7.0f %8.1f %7d %10d %8d %6d %7.1f %6.1f %5d" % row, flush=True)
            next_report = now + args.report
        pump(0.01)
    stop.set()
    send("/quit")
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    jack.terminate()
    jack.wait(10)
    if rows:
        first, warm, last = rows[0], rows[min(3, len(rows) - 1)], rows[-1]
        print("\nRSS: start %.1f MB, after 30 s %.1f MB, end %.1f MB; xruns %d; stretch underruns %d; dropped %d; /fail %d; "
              "players shed at the end %d (most at once %d)"
              % (first[1], warm[1], last[1], last[2], last[3], last[4], last[5], last[8], max(r[8] for r in rows)))
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
