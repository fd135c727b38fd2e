#pragma once
// The session log (--session-log DIR): everything a performance's sound depends on, as it
// happens, so that `loopd --replay DIR out.wav` renders it again offline, sample for sample.
//
//   DIR/session.log  the packets every client sent, in the order the control thread took them,
//                    each with the engine sample it arrived at and the clocks of that moment;
//                    the completion messages in the order they ran; and for every block that
//                    took commands, how many it took from each engine queue (Engine::SessionMark):
//                    the sample each command took effect at.
//   DIR/input.w64    the engine's input from sample 0, block by block as the nodes heard it
//                    (float, W64: no 4 GB limit; written by the Recorder like a recording).
//
// Crash-safe like recordings: the log is written to the file every pass of the control loop
// (a few milliseconds) and synced to disk every second; the input file's header is rewritten
// with every write. A log cut off by a crash reads up to its last whole record (read() says so).
//
// Format: "LOOPDSES", u32 version, u32 n, n bytes of JSON (the header: the server's command line,
// working directory, rate, block, channels, latency); then records, each u8 type, u32 n, n bytes,
// little-endian. Threads: the writer is the control thread's; read() is anyone's.
#include <cstdint>
#include <string>
#include <vector>

#include "osc/Transport.h"

namespace loopd {

struct SessionHeader {
    std::vector<std::string> argv;  // the live server's command line (argv[0] included)
    std::string cwd;                // its working directory (relative paths in argv and packets)
    double sampleRate = 48000.0;
    int blockSize = 64;
    int inputs = 0, outputs = 2;
    int roundTripLatency = 0;       // what its loopers compensated (the driver's figure)
    std::string driver;
    std::string started;            // ISO 8601 UTC
    std::string version;            // loopd's
};

// One thing the control thread did that a replay does again, in the same order.
struct SessionAction {
    enum class Kind : uint8_t { Packet = 'P', Completion = 'K', TcpClosed = 'T', Shutdown = 'S' };
    Kind kind = Kind::Packet;
    int64_t sample = 0;     // the engine's published sample time when it ran (blocks done before it)
    uint64_t ntp = 0;       // the wall clock then (NTP 32.32)
    double steady = 0.0;    // the monotonic clock then (seconds)
    osc::Endpoint from;     // Packet: the client
    std::vector<char> bytes; // Packet: the OSC packet
    uint32_t completion = 0; // Completion: its number
    uint64_t tcpId = 0;      // TcpClosed
};

struct SessionMarkRecord {
    int64_t sample = 0;
    uint64_t control = 0, worker = 0, hash = 0;
    double blockNtp = 0.0;
};

struct SessionRecording {
    SessionHeader header;
    std::vector<SessionAction> actions;   // in the order they ran
    std::vector<SessionMarkRecord> marks; // by sample
    bool closed = false;      // the server wrote its closing record (a clean stop)
    int64_t endSample = -1;   // the sample it stopped at (closed), else -1
    uint64_t marksLost = 0;   // blocks whose mark found the engine's queue full (the replay may differ)
    std::string cut;          // why reading stopped early ("" when the log is whole)
    // Reads DIR/session.log; throws std::runtime_error when it is not a session log or its
    // header is unreadable (a log cut later is read up to the cut, see `cut`).
    static SessionRecording read(const std::string& dir);
};

class SessionLog {
public:
    static constexpr uint32_t kVersion = 1;
    // [control] Creates DIR (and its parents) and DIR/session.log; throws with the reason.
    SessionLog(const std::string& dir, const SessionHeader& header);
    ~SessionLog();
    SessionLog(const SessionLog&) = delete;
    SessionLog& operator=(const SessionLog&) = delete;

    const std::string& dir() const noexcept { return dir_; }
    std::string inputPath() const { return dir_ + "/input.w64"; }

    // [control] Records (buffered until flush()).
    void packet(int64_t sample, uint64_t ntp, double steady, const osc::Endpoint& from, const char* data, size_t size);
    void completion(int64_t sample, uint64_t ntp, double steady, uint32_t id);
    void tcpClosed(int64_t sample, uint64_t tcpId);
    // The server began to shut down (it stops every recording then).
    void shutdown(int64_t sample);
    void mark(const SessionMarkRecord& m);
    void marksLost(int64_t sample, uint64_t count);
    // [control] The closing record (a clean stop at `sample`), then flush.
    void close(int64_t sample);
    // [control] Write what is buffered; sync to disk when a second has passed since the last.
    void flush();
    // Bytes written so far (the header included).
    uint64_t bytes() const noexcept { return written_; }

private:
    void record(char type, const std::vector<char>& payload);
    std::string dir_;
    int fd_ = -1;
    std::vector<char> buffer_;
    std::vector<char> payload_;
    uint64_t written_ = 0;
    double lastSync_ = 0.0;
    bool failed_ = false;
};

} // namespace loopd
