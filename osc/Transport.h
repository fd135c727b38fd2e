#pragma once
// OSC over UDP and TCP (scsynth framing: a big-endian int32 length before every packet).
// Replies go back to where a packet came from: the UDP source address or the TCP connection.
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace loopd::osc {

struct Endpoint {
    enum class Kind : uint8_t { None, Udp, Tcp };
    Kind kind = Kind::None;
    sockaddr_storage addr{};
    socklen_t addrLen = 0;
    uint64_t tcpId = 0; // connection serial for Kind::Tcp
    bool operator==(const Endpoint& o) const noexcept;
    std::string str() const;
};

class Transport {
public:
    struct Options {
        std::string bindAddress = "127.0.0.1";
        int udpPort = 57120;   // 0 = any free port; -1 = no UDP
        int tcpPort = 57120;   // 0 = any free port; -1 = no TCP; kSameAsUdp: the UDP port's number
    };
    static constexpr int kSameAsUdp = -2;
    // Returns whether it took the packet. A TCP packet it did not take stays in that
    // connection's buffer and the connection is not read until a later poll() delivers the
    // packet again and it is taken (back-pressure: the client's sends block, nothing is lost).
    // UDP packets are never offered twice.
    using PacketHandler = std::function<bool(const char* data, size_t size, const Endpoint& from)>;

    Transport() = default;
    ~Transport();
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;

    // [control] Throws std::runtime_error with the reason when a socket cannot be bound.
    void open(const Options& options);
    // [control] Wait up to timeoutMs for traffic and deliver every complete packet (at most 1 ms
    // while a connection waits for its packet to be taken).
    void poll(int timeoutMs, const PacketHandler& onPacket);
    // An extra descriptor poll() also waits on (readable: it returns early), e.g. an eventfd
    // other threads post to wake the polling thread. -1: none.
    void setWakeFd(int fd) noexcept { wakeFd_ = fd; }
    // [control|worker] Thread-safe, never blocks; never called from the audio thread. False if
    // it could not send (over TCP: the client left, or has not read 64 MB of replies).
    bool send(const Endpoint& to, const char* data, size_t size);
    void close();

    // [control] The TCP connections closed since the last call (Endpoint::tcpId), so that the
    // server can forget their clients (as scsynth logs out a TCP client that leaves).
    std::vector<uint64_t> takeClosed() { return std::exchange(closedIds_, {}); }

    int udpPort() const noexcept { return udpPort_; }
    int tcpPort() const noexcept { return tcpPort_; }

private:
    struct Connection {
        int fd;
        uint64_t id;
        Endpoint peer;
        std::vector<char> in;   // received, not yet a whole packet or not yet taken [poll thread]
        std::vector<char> out;  // framed replies the socket did not take yet [sendMutex_]
        bool paused = false;    // the handler refused the packet at the front of `in`
    };
    void acceptConnections();
    // Reads what the socket holds; false when the connection is closed or broken.
    bool readConnection(Connection& c, const PacketHandler& onPacket);
    // Delivers the complete packets buffered; false (c.paused) when the handler refused one.
    bool deliver(Connection& c, const PacketHandler& onPacket);
    // Writes what the socket takes of c.out (sendMutex_ held); false when the connection broke.
    bool flush(Connection& c);

    int udpFd_ = -1, tcpFd_ = -1;

    int wakeFd_ = -1;
    int udpPort_ = -1, tcpPort_ = -1;
    std::vector<Connection> connections_;
    std::vector<uint64_t> closedIds_;
    uint64_t nextConnectionId_ = 1;
    std::mutex sendMutex_;
    std::vector<char> udpBuffer_ = std::vector<char>(65536);
};

} // namespace loopd::osc
