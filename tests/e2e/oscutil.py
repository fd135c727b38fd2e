"""Minimal OSC 1.0 encoding/decoding for tests: TCP framing and nrt scores.

Arguments are (tag, value) pairs or plain Python values (int -> i, float -> f, str -> s).
"""
import contextlib
import os
import socket
import struct
import subprocess


def _pad(b):
    return b + b"\0" * (4 - len(b) % 4)


def _typed(a):
    if isinstance(a, tuple):
        return a
    if isinstance(a, bool):
        return ("T" if a else "F", None)
    if isinstance(a, int):
        return ("i", a)
    if isinstance(a, float):
        return ("f", a)
    if isinstance(a, bytes):
        return ("b", a)
    return ("s", str(a))


def message(address, *args):
    typed = [_typed(a) for a in args]
    out = _pad(address.encode()) + _pad(("," + "".join(t for t, _ in typed)).encode())
    for t, v in typed:
        if t == "i":
            out += struct.pack(">i", v)
        elif t == "f":
            out += struct.pack(">f", v)
        elif t == "d":
            out += struct.pack(">d", v)
        elif t == "h":
            out += struct.pack(">q", v)
        elif t == "s":
            out += _pad(v.encode())
        elif t == "b":
            out += struct.pack(">i", len(v)) + v + b"\0" * ((4 - len(v) % 4) % 4)
    return out


def bundle(timetag, *messages):
    out = b"#bundle\0" + struct.pack(">Q", timetag)
    for m in messages:
        out += struct.pack(">i", len(m)) + m
    return out


def seconds_tag(seconds):
    """nrt score timetag: seconds from the start, as NTP 32.32."""
    return int(round(seconds * (1 << 32)))


def decode(data):
    def string(pos):
        end = data.index(b"\0", pos)
        return data[pos:end].decode(errors="replace"), (end + 4) & ~3

    address, pos = string(0)
    tags, pos = string(pos)
    args = []
    for t in tags[1:]:
        if t == "i":
            args.append(struct.unpack_from(">i", data, pos)[0]); pos += 4
        elif t == "f":
            args.append(struct.unpack_from(">f", data, pos)[0]); pos += 4
        elif t == "d":
            args.append(struct.unpack_from(">d", data, pos)[0]); pos += 8
        elif t == "h":
            args.append(struct.unpack_from(">q", data, pos)[0]); pos += 8
        elif t == "s":
            s, pos = string(pos); args.append(s)
    return address, args


class TcpClient:
    """scsynth TCP framing: a big-endian int32 length before each packet."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send_raw(self, packet):
        self.sock.sendall(struct.pack(">i", len(packet)) + packet)

    def send(self, address, *args):
        self.send_raw(message(address, *args))

    def recv(self, timeout=5.0):
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">i", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    pkt, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return decode(pkt)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def close(self):
        self.sock.close()


class UdpClient:
    """Raw UDP packets to the server and the replies it sends back to this socket."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.addr = ("127.0.0.1", port)

    def send_raw(self, packet):
        self.sock.sendto(packet, self.addr)

    def send(self, address, *args):
        self.send_raw(message(address, *args))

    def recv(self, timeout=5.0):
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65536)
        return decode(data)

    def close(self):
        self.sock.close()


def render_nrt_twice(loopd, score, directory, timeout=120):
    """Renders a score with `loopd --nrt` twice (no input) into out0.wav and out1.wav in
    `directory`; returns the two files' bytes. Raises if a render fails."""
    outs = []
    for k in range(2):
        out = os.path.join(directory, "out%d.wav" % k)
        r = subprocess.run([loopd, "--nrt", score, "_", out], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError("loopd --nrt failed (%d):\n%s" % (r.returncode, r.stderr))
        with open(out, "rb") as f:
            outs.append(f.read())
    return outs


def write_score(path, bundles):
    """bundles: list of (seconds, [message bytes...])."""
    with open(path, "wb") as f:
        for seconds, msgs in bundles:
            b = bundle(seconds_tag(seconds), *msgs)
            f.write(struct.pack(">i", len(b)) + b)


def read_wav(path):
    """Reads a WAV (PCM16/24/32 or float32) with the header as written; returns
    (rate, channels, frames list-of-tuples, declared_data_bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", "not a WAV file"
    pos = 12
    fmt = None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            tag, ch, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == 0xFFFE:
                tag = struct.unpack_from("<H", body, 24)[0]
            fmt = (tag, ch, rate, bits)
        elif cid == b"data":
            tag, ch, rate, bits = fmt
            n = len(body) // (ch * bits // 8)
            if tag == 3 and bits == 32:
                vals = struct.unpack_from("<%df" % (n * ch), body)
            elif bits == 16:
                vals = [v / 32768.0 for v in struct.unpack_from("<%dh" % (n * ch), body)]
            else:
                raise ValueError("unsupported WAV sample format in test reader")
            frames = [tuple(vals[i * ch:(i + 1) * ch]) for i in range(n)]
            return rate, ch, frames, size
        pos += 8 + size + (size & 1)
    raise ValueError("no data chunk")


class NamedJack:
    """A JACK server of its own name on the dummy driver (jackd -n NAME): a test never meets
    another JACK server. `env` is the environment for JACK clients; `current()` makes it this
    process's while a loopd is started."""

    def __init__(self, name):
        self.name = name
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=name)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["jackd", "-n", self.name, "--no-realtime", "-d", "dummy", "--rate", "48000", "--period", "256"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = subprocess.run(["jack_wait", "-w", "-t", "10"], env=self.env, capture_output=True, text=True, timeout=20)
        if r.returncode != 0 or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("jackd -n %s did not start: %s" % (self.name, r.stdout + r.stderr))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(18)  # SIGCONT: a stopped jackd takes no SIGTERM until it runs again
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @contextlib.contextmanager
    def current(self):
        old = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        try:
            yield
        finally:
            if old is None:
                del os.environ["JACK_DEFAULT_SERVER"]
            else:
                os.environ["JACK_DEFAULT_SERVER"] = old
