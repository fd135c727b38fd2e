// A JACK MIDI peer for the tests: a JACK client of its own with one MIDI output and one MIDI
// input, driven line by line on stdin, reporting on stdout (flushed per line):
//   connect OUT IN          jack_connect (e.g. "peer:out loopd:midi_in")
//   send HH HH [HH]         a message in the next cycle (hex bytes)
//   sendat FRAME HH ...     a message at the absolute JACK frame FRAME (must be ahead)
//   clock BPM [FRAMES]      a steady MIDI clock (24 per beat, each on its frame) from the next
//                           cycle, for FRAMES frames (0: until "clock 0"); "clock 0" stops it
//   start / stop / continue real-time messages with the next clock tick (or the next cycle)
//   now                     prints "now FRAME" (the frame the next cycle starts at, roughly)
//   quit
// Every message that arrives at its input is printed "recv FRAME HH HH HH" (FRAME absolute);
// every message it sent "sent FRAME HH ..." (so tests compare frames on JACK's own clock);
// a "sendat" whose frame had passed before its cycle came is dropped as "missed FRAME HH ...".
// What a loaded machine does to the graph is reported too, so tests can tell it from loopd's
// mistakes: "xrun FRAME" (JACK's xrun callback: some client, maybe loopd, missed a cycle;
// FRAME is JACK's time when the news came) and "skip FRAME FRAMES" (this peer's own cycles
// missed: its output buffer was read again stale, its input of those cycles is lost).
#include <jack/jack.h>
#include <jack/midiport.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Out {
    uint64_t frame = 0; // 0: the next cycle
    uint8_t bytes[3] = {};
    size_t size = 0;
};

struct Report {
    enum Kind { Recv, Sent, Missed, Xrun, Skip } kind = Recv;
    uint64_t frame = 0;
    uint8_t bytes[3] = {};
    size_t size = 0;
    uint64_t skipped = 0;
};

jack_client_t* client = nullptr;
jack_port_t* inPort = nullptr;
jack_port_t* outPort = nullptr;
std::mutex lock; // held briefly by everyone; the process callback waits for it (a test tool: no cycle may lose its events)
std::vector<Out> pending;
std::vector<Report> reports;
double clockPeriod = 0.0;   // frames per tick; 0: no clock
double nextTick = -1.0;     // absolute frame of the next tick (-1: from the next cycle)
uint64_t clockUntil = 0;    // 0: no end
std::vector<uint8_t> withNextTick; // start/stop/continue to send with the next tick
std::atomic<uint64_t> cycleStart{0};
uint64_t expectedStart = 0; // [process] where the next cycle should start (0: not known yet)

int process(jack_nframes_t n, void*) {
    const uint64_t t0 = jack_last_frame_time(client);
    cycleStart.store(t0 + n);
    if (expectedStart && t0 != expectedStart) {
        std::lock_guard<std::mutex> g(lock);
        Report r;
        r.kind = Report::Skip;
        r.frame = expectedStart;
        r.skipped = t0 - expectedStart;
        reports.push_back(r);
    }
    expectedStart = t0 + n;
    void* in = jack_port_get_buffer(inPort, n);
    void* out = jack_port_get_buffer(outPort, n);
    jack_midi_clear_buffer(out);
    lock.lock();
    const uint32_t count = jack_midi_get_event_count(in);
    for (uint32_t i = 0; i < count; ++i) {
        jack_midi_event_t ev;
        if (jack_midi_event_get(&ev, in, i) != 0 || ev.size > 3) continue;
        Report r;
        r.frame = t0 + ev.time;
        r.size = ev.size;
        std::memcpy(r.bytes, ev.buffer, ev.size);
        reports.push_back(r);
    }
    // Everything due in this cycle, in time order: messages, then clock ticks interleaved.
    struct Ev { uint32_t at; uint8_t b[3]; size_t size; };
    std::vector<Ev> evs; // a test tool: allocation in its own process callback is acceptable
    for (size_t i = 0; i < pending.size();) {
        const Out& o = pending[i];
        if (o.frame == 0 || (o.frame >= t0 && o.frame < t0 + n)) {
            Ev e{o.frame == 0 ? 0u : static_cast<uint32_t>(o.frame - t0), {o.bytes[0], o.bytes[1], o.bytes[2]}, o.size};
            evs.push_back(e);
            pending.erase(pending.begin() + static_cast<long>(i));
        } else if (o.frame < t0) {
            Report r; // its frame had passed when the command came (a slow test or a skipped cycle)
            r.kind = Report::Missed;
            r.frame = o.frame;
            r.size = o.size;
            std::memcpy(r.bytes, o.bytes, o.size);
            reports.push_back(r);
            pending.erase(pending.begin() + static_cast<long>(i));
        } else {
            ++i;
        }
    }
    if (clockPeriod > 0.0 || !withNextTick.empty()) {
        if (nextTick < 0.0) nextTick = static_cast<double>(t0);
        if (clockPeriod <= 0.0 && !withNextTick.empty()) {
            for (uint8_t b : withNextTick) evs.push_back(Ev{0, {b, 0, 0}, 1});
            withNextTick.clear();
        }
        while (clockPeriod > 0.0 && nextTick < static_cast<double>(t0 + n)) {
            const uint64_t f = static_cast<uint64_t>(std::llround(nextTick));
            if (clockUntil && f >= clockUntil) { clockPeriod = 0.0; nextTick = -1.0; break; }
            const uint32_t at = f > t0 ? static_cast<uint32_t>(f - t0) : 0u;
            for (uint8_t b : withNextTick) evs.push_back(Ev{at, {b, 0, 0}, 1});
            withNextTick.clear();
            evs.push_back(Ev{at, {0xf8, 0, 0}, 1});
            nextTick += clockPeriod;
        }
    }
    std::stable_sort(evs.begin(), evs.end(), [](const Ev& a, const Ev& b) { return a.at < b.at; });
    for (const Ev& e : evs) {
        if (jack_midi_event_write(out, e.at, e.b, e.size) == 0) {
            Report r;
            r.kind = Report::Sent;
            r.frame = t0 + e.at;
            r.size = e.size;
            std::memcpy(r.bytes, e.b, e.size);
            reports.push_back(r);
        }
    }
    lock.unlock();
    return 0;
}

void printReports() {
    std::vector<Report> rs;
    {
        std::lock_guard<std::mutex> g(lock);
        rs.swap(reports);
    }
    for (const Report& r : rs) {
        if (r.kind == Report::Xrun || r.kind == Report::Skip) {
            std::printf("%s %llu %llu\n", r.kind == Report::Xrun ? "xrun" : "skip", static_cast<unsigned long long>(r.frame),
                        static_cast<unsigned long long>(r.skipped));
            continue;
        }
        const char* kind = r.kind == Report::Missed ? "missed" : r.kind == Report::Sent ? "sent" : "recv";
        std::printf("%s %llu", kind, static_cast<unsigned long long>(r.frame));
        for (size_t i = 0; i < r.size; ++i) std::printf(" %02x", r.bytes[i]);
        std::printf("\n");
    }
    std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv) {
    const char* name = argc > 1 ? argv[1] : "midipeer";
    jack_status_t status{};
    client = jack_client_open(name, JackNoStartServer, &status);
    if (!client) { std::fprintf(stderr, "no JACK server\n"); return 1; }
    inPort = jack_port_register(client, "in", JACK_DEFAULT_MIDI_TYPE, JackPortIsInput, 0);
    outPort = jack_port_register(client, "out", JACK_DEFAULT_MIDI_TYPE, JackPortIsOutput, 0);
    jack_set_process_callback(client, process, nullptr);
    jack_set_xrun_callback(client, [](void*) {
        std::lock_guard<std::mutex> g(lock);
        Report r;
        r.kind = Report::Xrun;
        r.frame = jack_frame_time(client);
        reports.push_back(r);
        return 0;
    }, nullptr);
    if (jack_activate(client) != 0) return 1;
    // "ready" only once a cycle has run: until then there is no frame to answer "now" with (it
    // said 0, and a test that scheduled "now + 0.1 s" found its note's frame long gone).
    for (int i = 0; i < 2000 && cycleStart.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (cycleStart.load() == 0) { std::fprintf(stderr, "no process cycle within 10 s of activation\n"); return 1; }
    std::printf("ready %s %u\n", jack_get_client_name(client), jack_get_sample_rate(client));
    std::fflush(stdout);
    std::atomic<bool> done{false};
    std::thread printer([&] {
        while (!done) {
            printReports();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    });
    const double rate = jack_get_sample_rate(client);
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string cmd;
        in >> cmd;
        if (cmd == "quit") break;
        if (cmd == "connect") {
            std::string a, b;
            in >> a >> b;
            const int r = jack_connect(client, a.c_str(), b.c_str());
            std::printf("connected %d\n", r);
        } else if (cmd == "send" || cmd == "sendat") {
            Out o;
            if (cmd == "sendat") in >> o.frame;
            std::string hex;
            while (o.size < 3 && in >> hex) o.bytes[o.size++] = static_cast<uint8_t>(std::stoul(hex, nullptr, 16));
            std::lock_guard<std::mutex> g(lock);
            pending.push_back(o);
        } else if (cmd == "clock") {
            double bpm = 0.0;
            uint64_t frames = 0;
            in >> bpm >> frames;
            std::lock_guard<std::mutex> g(lock);
            clockPeriod = bpm > 0.0 ? rate * 60.0 / (bpm * 24.0) : 0.0;
            if (bpm <= 0.0) nextTick = -1.0;
            clockUntil = frames ? cycleStart.load() + frames : 0;
        } else if (cmd == "start" || cmd == "stop" || cmd == "continue") {
            std::lock_guard<std::mutex> g(lock);
            withNextTick.push_back(cmd == "start" ? 0xfa : cmd == "stop" ? 0xfc : 0xfb);
        } else if (cmd == "now") {
            std::printf("now %llu\n", static_cast<unsigned long long>(cycleStart.load()));
        }
        std::fflush(stdout);
    }
    done = true;
    printer.join();
    printReports();
    jack_deactivate(client);
    jack_client_close(client);
    return 0;
}
