#!/usr/bin/python3
"""loopd from Python (Debian's python3-liblo): load a file, play it, record the master to a
file, fade out, stop. Start loopd first (`scripts/start`), then:

    /usr/bin/python3 docs/examples/quickstart.py some.wav /tmp/take.wav

Every command that fails answers /fail <address> <reason>; this script prints what comes back.
"""
import sys
import time

import liblo

src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/sounds/alsa/Front_Center.wav"
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/loopd-take.wav"

loopd = liblo.Address("127.0.0.1", 57120)
me = liblo.Server()
me.add_method(None, None, lambda path, args: print("<-", path, *args))


def send(path, *args):
    print("->", path, *args)
    me.send(loopd, path, *args)


def wait(seconds):
    end = time.time() + seconds
    while time.time() < end:
        me.recv(10)


send("/notify", 1)                                      # node events, beats, trouble reports
send("/b_allocRead", 1, src)                            # load (any libsndfile format, resampled)
send("/sync", 1)                                        # /synced 1 once the load has finished
wait(0.5)
send("/rec_start", out)                                 # record the master bus (crash-safe WAV)
send("/s_new", "player", 100, 0, 0, "buf", 1, "loop", 1, "gain", 0.5)
wait(3.0)
send("/n_ramp", 100, "gain", 0.0, 2.0)                  # a 2 s fade out
wait(2.2)
send("/n_free", 100)
send("/rec_stop")                                       # /done /rec_stop id path when closed
wait(0.5)
send("/status")
wait(0.3)
