#include "server/io/SessionLog.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace loopd {
namespace {

constexpr char kMagic[8] = {'L', 'O', 'O', 'P', 'D', 'S', 'E', 'S'};

template <class T>
void put(std::vector<char>& out, T v) {
    const size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &v, sizeof(T)); // little-endian machines only (x86-64, ARM64)
}

// Reads fixed-size fields from a record's payload; a short payload throws.
struct Cursor {
    const char* p;
    size_t left;
    template <class T>
    T get() {
        if (left < sizeof(T)) throw std::runtime_error("record too short");
        T v;
        std::memcpy(&v, p, sizeof(T));
        p += sizeof(T);
        left -= sizeof(T);
        return v;
    }
    std::vector<char> bytes(size_t n) {
        if (left < n) throw std::runtime_error("record too short");
        std::vector<char> v(p, p + n);
        p += n;
        left -= n;
        return v;
    }
};

// An action's kind and the times every timed record starts with: sample, NTP, steady clock.
SessionAction timed(SessionAction::Kind kind, Cursor& c) {
    SessionAction a;
    a.kind = kind;
    a.sample = c.get<int64_t>();
    a.ntp = c.get<uint64_t>();
    a.steady = c.get<double>();
    return a;
}

double steadyNow() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

} // namespace

SessionLog::SessionLog(const std::string& dir, const SessionHeader& h) : dir_(dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw std::runtime_error("cannot create the session log directory " + dir + ": " + ec.message());
    const std::string path = dir + "/session.log";
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
    nlohmann::json j;
    j["format"] = "loopd session log";
    j["argv"] = h.argv;
    j["cwd"] = h.cwd;
    j["sampleRate"] = h.sampleRate;
    j["blockSize"] = h.blockSize;
    j["inputs"] = h.inputs;
    j["outputs"] = h.outputs;
    j["roundTripLatency"] = h.roundTripLatency;
    j["driver"] = h.driver;
    j["started"] = h.started;
    j["version"] = h.version;
    const std::string text = j.dump(1);
    buffer_.insert(buffer_.end(), kMagic, kMagic + 8);
    put<uint32_t>(buffer_, kVersion);
    put<uint32_t>(buffer_, static_cast<uint32_t>(text.size()));
    buffer_.insert(buffer_.end(), text.begin(), text.end());
    lastSync_ = steadyNow();
    flush();
    ::fdatasync(fd_);
}

SessionLog::~SessionLog() {
    flush();
    if (fd_ >= 0) {
        ::fdatasync(fd_);
        ::close(fd_);
    }
}

void SessionLog::record(char type, const std::vector<char>& payload) {
    buffer_.push_back(type);
    put<uint32_t>(buffer_, static_cast<uint32_t>(payload.size()));
    buffer_.insert(buffer_.end(), payload.begin(), payload.end());
}

void SessionLog::packet(int64_t sample, uint64_t ntp, double steady, const osc::Endpoint& from, const char* data, size_t size) {
    payload_.clear();
    put<int64_t>(payload_, sample);
    put<uint64_t>(payload_, ntp);
    put<double>(payload_, steady);
    put<uint8_t>(payload_, static_cast<uint8_t>(from.kind));
    put<uint64_t>(payload_, from.tcpId);
    const auto addrLen = static_cast<uint32_t>(std::min<size_t>(from.addrLen, sizeof(from.addr)));
    put<uint32_t>(payload_, addrLen);
    const char* a = reinterpret_cast<const char*>(&from.addr);
    payload_.insert(payload_.end(), a, a + addrLen);
    put<uint32_t>(payload_, static_cast<uint32_t>(size));
    payload_.insert(payload_.end(), data, data + size);
    record('P', payload_);
}

void SessionLog::completion(int64_t sample, uint64_t ntp, double steady, uint32_t id) {
    payload_.clear();
    put<int64_t>(payload_, sample);
    put<uint64_t>(payload_, ntp);
    put<double>(payload_, steady);
    put<uint32_t>(payload_, id);
    record('K', payload_);
}

void SessionLog::tcpClosed(int64_t sample, uint64_t tcpId) {
    payload_.clear();
    put<int64_t>(payload_, sample);
    put<uint64_t>(payload_, tcpId);
    record('T', payload_);
}

void SessionLog::shutdown(int64_t sample) {
    payload_.clear();
    put<int64_t>(payload_, sample);
    record('S', payload_);
}

void SessionLog::mark(const SessionMarkRecord& m) {
    payload_.clear();
    put<int64_t>(payload_, m.sample);
    put<uint64_t>(payload_, m.control);
    put<uint64_t>(payload_, m.worker);
    put<uint64_t>(payload_, m.hash);
    put<double>(payload_, m.blockNtp);
    record('M', payload_);
}

void SessionLog::marksLost(int64_t sample, uint64_t count) {
    payload_.clear();
    put<int64_t>(payload_, sample);
    put<uint64_t>(payload_, count);
    record('L', payload_);
}

void SessionLog::close(int64_t sample) {
    payload_.clear();
    put<int64_t>(payload_, sample);
    record('E', payload_);
    flush();
    ::fdatasync(fd_);
}

void SessionLog::flush() {
    if (fd_ < 0 || buffer_.empty()) return;
    size_t done = 0;
    while (done < buffer_.size()) {
        const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (!failed_) spdlog::error("session log: cannot write {}/session.log: {} (the log stops here)", dir_, std::strerror(errno));
            failed_ = true;
            break;
        }
        done += static_cast<size_t>(n);
    }
    written_ += done;
    buffer_.clear();
    const double now = steadyNow();
    if (now - lastSync_ >= 1.0) {
        lastSync_ = now;
        ::fdatasync(fd_);
    }
}

SessionRecording SessionRecording::read(const std::string& dir) {
    const std::string path = dir + "/session.log";
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::vector<char> all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (all.size() < 16 || std::memcmp(all.data(), kMagic, 8) != 0) throw std::runtime_error(path + " is not a loopd session log");
    Cursor head{all.data() + 8, all.size() - 8};
    const auto version = head.get<uint32_t>();
    if (version > SessionLog::kVersion)
        throw std::runtime_error(path + " was written by a newer loopd (session log version " + std::to_string(version) +
                                 ", this one reads up to " + std::to_string(SessionLog::kVersion) + ")");
    const auto n = head.get<uint32_t>();
    if (n > head.left) throw std::runtime_error(path + ": its header is cut off");
    SessionRecording r;
    try {
        const auto j = nlohmann::json::parse(head.p, head.p + n);
        r.header.argv = j.at("argv").get<std::vector<std::string>>();
        r.header.cwd = j.value("cwd", "");
        r.header.sampleRate = j.at("sampleRate").get<double>();
        r.header.blockSize = j.at("blockSize").get<int>();
        r.header.inputs = j.at("inputs").get<int>();
        r.header.outputs = j.at("outputs").get<int>();
        r.header.roundTripLatency = j.value("roundTripLatency", 0);
        r.header.driver = j.value("driver", "");
        r.header.started = j.value("started", "");
        r.header.version = j.value("version", "");
    } catch (const std::exception& e) {
        throw std::runtime_error(path + ": unreadable header (" + e.what() + ")");
    }
    if (!(r.header.sampleRate > 0) || r.header.blockSize <= 0) throw std::runtime_error(path + ": header without a rate or block size");
    head.p += n;
    head.left -= n;
    while (head.left > 0) {
        if (head.left < 5) { r.cut = "a record is cut off at byte " + std::to_string(all.size() - head.left); break; }
        const char type = head.get<char>();
        const auto len = head.get<uint32_t>();
        if (len > head.left) { r.cut = "a record is cut off at byte " + std::to_string(all.size() - head.left - 5); break; }
        Cursor c{head.p, len};
        head.p += len;
        head.left -= len;
        try {
            switch (type) {
            case 'P': {
                SessionAction a = timed(SessionAction::Kind::Packet, c);
                a.from.kind = static_cast<osc::Endpoint::Kind>(c.get<uint8_t>());
                a.from.tcpId = c.get<uint64_t>();
                const auto addrLen = c.get<uint32_t>();
                if (addrLen > sizeof(a.from.addr)) throw std::runtime_error("bad address length");
                const auto addr = c.bytes(addrLen);
                std::memcpy(&a.from.addr, addr.data(), addrLen);
                a.from.addrLen = static_cast<socklen_t>(addrLen);
                const auto size = c.get<uint32_t>();
                a.bytes = c.bytes(size);
                r.actions.push_back(std::move(a));
                break;
            }
            case 'K': {
                SessionAction a = timed(SessionAction::Kind::Completion, c);
                a.completion = c.get<uint32_t>();
                r.actions.push_back(std::move(a));
                break;
            }
            case 'T': {
                SessionAction a;
                a.kind = SessionAction::Kind::TcpClosed;
                a.sample = c.get<int64_t>();
                a.tcpId = c.get<uint64_t>();
                r.actions.push_back(std::move(a));
                break;
            }
            case 'S': {
                SessionAction a;
                a.kind = SessionAction::Kind::Shutdown;
                a.sample = c.get<int64_t>();
                r.actions.push_back(std::move(a));
                break;
            }
            case 'M': {
                SessionMarkRecord m;
                m.sample = c.get<int64_t>();
                m.control = c.get<uint64_t>();
                m.worker = c.get<uint64_t>();
                m.hash = c.get<uint64_t>();
                m.blockNtp = c.get<double>();
                r.marks.push_back(m);
                break;
            }
            case 'L':
                c.get<int64_t>();
                r.marksLost += c.get<uint64_t>();
                break;
            case 'E':
                r.endSample = c.get<int64_t>();
                r.closed = true;
                break;
            default: break; // a record type of a later version: skipped
            }
        } catch (const std::exception& e) {
            r.cut = std::string("a damaged record (") + e.what() + ")";
            break;
        }
        if (r.closed) break;
    }
    if (r.cut.empty() && !r.closed) r.cut = "the log ends without its closing record (the server crashed or was killed)";
    return r;
}

} // namespace loopd
