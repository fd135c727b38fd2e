#include "osc/Transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace loopd::osc {
namespace {
constexpr size_t kMaxTcpPacket = 16u << 20;
constexpr size_t kMaxQueuedOut = 64u << 20; // replies waiting for a client that does not read

int boundSocket(int type, const std::string& bind, int port, int& actualPort) {
    const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    // TCP may rebind a port whose old connections linger in TIME_WAIT (Linux still refuses a
    // port another socket listens on). UDP gets no SO_REUSEADDR: with it a second server would
    // silently share the port and take the replies.
    if (type == SOCK_STREAM) {
        const int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, bind.c_str(), &a.sin_addr) != 1) {
        ::close(fd);
        throw std::runtime_error("bad --bind address: " + bind);
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        const int err = errno;
        ::close(fd);
        const std::string what = std::string(type == SOCK_STREAM ? "TCP" : "UDP") + " port " + std::to_string(port) + " on " + bind;
        if (err == EADDRINUSE)
            throw std::runtime_error(what + " is already in use (another loopd or scsynth?): choose another port with -u/-t");
        throw std::runtime_error(what + ": " + std::strerror(err));
    }
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    actualPort = ntohs(a.sin_port);
    return fd;
}
} // namespace

bool Endpoint::operator==(const Endpoint& o) const noexcept {
    if (kind != o.kind) return false;
    if (kind == Kind::Tcp) return tcpId == o.tcpId;
    return addrLen == o.addrLen && std::memcmp(&addr, &o.addr, addrLen) == 0;
}

std::string Endpoint::str() const {
    if (kind == Kind::None) return "nowhere";
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (addr.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
        ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    }
    return std::string(kind == Kind::Tcp ? "tcp:" : "udp:") + host + ":" + std::to_string(port);
}

Transport::~Transport() { close(); }

void Transport::open(const Options& o) {
    if (o.udpPort >= 0) udpFd_ = boundSocket(SOCK_DGRAM, o.bindAddress, o.udpPort, udpPort_);
    // The same number as UDP: the port UDP really got (with -u 0, the one the system chose).
    const int tcpPort = o.tcpPort == kSameAsUdp ? (udpFd_ >= 0 ? udpPort_ : 57120) : o.tcpPort;
    if (tcpPort >= 0) {
        tcpFd_ = boundSocket(SOCK_STREAM, o.bindAddress, tcpPort, tcpPort_);
        if (::listen(tcpFd_, 16) != 0) throw std::runtime_error(std::string("listen: ") + std::strerror(errno));
    }
    if (udpFd_ >= 0) {
        // Room for bursts both ways: a 300-message bundle answered by 300 replies must not lose any.
        const int size = 4 << 20;
        ::setsockopt(udpFd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        ::setsockopt(udpFd_, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    }
}

void Transport::close() {
    for (auto& c : connections_) ::close(c.fd);
    connections_.clear();
    if (udpFd_ >= 0) ::close(udpFd_);
    if (tcpFd_ >= 0) ::close(tcpFd_);
    udpFd_ = tcpFd_ = -1;
}

void Transport::acceptConnections() {
    for (;;) {
        Endpoint peer;
        peer.kind = Endpoint::Kind::Tcp;
        peer.addrLen = sizeof peer.addr;
        const int fd = ::accept4(tcpFd_, reinterpret_cast<sockaddr*>(&peer.addr), &peer.addrLen, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return;
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        peer.tcpId = nextConnectionId_++;
        std::lock_guard<std::mutex> lock(sendMutex_); // send() walks the table on other threads
        connections_.push_back({fd, peer.tcpId, peer, {}, {}, false});
    }
}

bool Transport::deliver(Connection& c, const PacketHandler& onPacket) {
    size_t pos = 0;
    bool taken = true;
    while (c.in.size() - pos >= 4) {
        uint32_t len;
        std::memcpy(&len, c.in.data() + pos, 4);
        len = ntohl(len);
        if (c.in.size() - pos - 4 < len) break;
        if (len > 0 && !onPacket(c.in.data() + pos + 4, len, c.peer)) { taken = false; break; }
        pos += 4 + len;
    }
    c.in.erase(c.in.begin(), c.in.begin() + static_cast<long>(pos));
    c.paused = !taken;
    return taken;
}

bool Transport::readConnection(Connection& c, const PacketHandler& onPacket) {
    char buf[65536];
    while (!c.paused) {
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n == 0) return false;
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        c.in.insert(c.in.end(), buf, buf + n);
        if (c.in.size() >= 4) {
            uint32_t len;
            std::memcpy(&len, c.in.data(), 4);
            if (ntohl(len) > kMaxTcpPacket) return false; // not OSC framing: drop the connection
        }
        deliver(c, onPacket);
    }
    return true;
}

void Transport::poll(int timeoutMs, const PacketHandler& onPacket) {
    // Connections holding a packet that was not taken: offer it again first.
    bool waiting = false;
    for (auto& c : connections_)
        if (c.paused && !deliver(c, onPacket)) waiting = true;
    std::vector<pollfd> fds;
    if (udpFd_ >= 0) fds.push_back({udpFd_, POLLIN, 0});
    if (tcpFd_ >= 0) fds.push_back({tcpFd_, POLLIN, 0});
    // A paused connection is not read (its client feels back-pressure); hang-ups still show.
    // Replies a client has not taken yet wait in its outgoing buffer until it can write.
    {
        std::lock_guard<std::mutex> lock(sendMutex_);
        for (auto& c : connections_)
            fds.push_back({c.fd, static_cast<short>((c.paused ? 0 : POLLIN) | (c.out.empty() ? 0 : POLLOUT)), 0});
    }
    if (wakeFd_ >= 0) fds.push_back({wakeFd_, POLLIN, 0}); // last: the indices below stay as they are
    const int r = ::poll(fds.data(), fds.size(), waiting ? std::min(timeoutMs, 1) : timeoutMs);
    if (wakeFd_ >= 0) fds.pop_back();
    if (r <= 0) return;
    size_t k = 0;
    if (udpFd_ >= 0) {
        if (fds[k].revents & POLLIN) {
            for (int burst = 0; burst < 256; ++burst) {
                Endpoint from;
                from.kind = Endpoint::Kind::Udp;
                from.addrLen = sizeof from.addr;
                const ssize_t n = ::recvfrom(udpFd_, udpBuffer_.data(), udpBuffer_.size(), MSG_DONTWAIT,
                                             reinterpret_cast<sockaddr*>(&from.addr), &from.addrLen);
                if (n <= 0) break;
                onPacket(udpBuffer_.data(), static_cast<size_t>(n), from);
            }
        }
        ++k;
    }
    if (tcpFd_ >= 0) {
        if (fds[k].revents & POLLIN) acceptConnections();
        ++k;
    }
    // Connections that existed when poll() was set up occupy fds[k...].
    std::vector<uint64_t> closed;
    const size_t polledConnections = fds.size() - k;
    for (size_t j = 0; j < polledConnections && j < connections_.size(); ++j) {
        const short ev = fds[k + j].revents;
        if (ev & POLLOUT) {
            std::lock_guard<std::mutex> lock(sendMutex_);
            if (!flush(connections_[j])) closed.push_back(connections_[j].id);
        }
        if (!(ev & (POLLIN | POLLHUP | POLLERR))) continue;
        if (connections_[j].paused && !(ev & POLLIN)) {
            // Hung up while its packets wait: keep them until taken, then notice the close.
            if (ev & POLLERR) closed.push_back(connections_[j].id);
            continue;
        }
        if (!readConnection(connections_[j], onPacket)) closed.push_back(connections_[j].id);
    }
    if (!closed.empty()) {
        std::lock_guard<std::mutex> lock(sendMutex_);
        for (uint64_t id : closed) {
            for (size_t j = 0; j < connections_.size(); ++j) {
                if (connections_[j].id != id) continue;
                closedIds_.push_back(id);
                ::close(connections_[j].fd);
                connections_.erase(connections_.begin() + static_cast<long>(j));
                break;
            }
        }
    }
}

bool Transport::flush(Connection& c) {
    size_t off = 0;
    while (off < c.out.size()) {
        const ssize_t n = ::send(c.fd, c.out.data() + off, c.out.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) { off += static_cast<size_t>(n); continue; }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
        return false; // broken
    }
    c.out.erase(c.out.begin(), c.out.begin() + static_cast<long>(off));
    return true;
}

bool Transport::send(const Endpoint& to, const char* data, size_t size) {
    std::lock_guard<std::mutex> lock(sendMutex_);
    if (to.kind == Endpoint::Kind::Udp) {
        if (udpFd_ < 0) return false;
        return ::sendto(udpFd_, data, size, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&to.addr), to.addrLen) == static_cast<ssize_t>(size);
    }
    if (to.kind != Endpoint::Kind::Tcp) return false;
    for (auto& c : connections_) {
        if (c.id != to.tcpId) continue;
        if (size > kMaxTcpPacket) return false;
        // Never blocks: what the socket does not take now waits in the connection's outgoing
        // buffer (poll() writes it when the client reads), up to kMaxQueuedOut bytes.
        if (c.out.size() + 4 + size > kMaxQueuedOut) return false;
        const uint32_t len = htonl(static_cast<uint32_t>(size));
        c.out.insert(c.out.end(), reinterpret_cast<const char*>(&len), reinterpret_cast<const char*>(&len) + 4);
        c.out.insert(c.out.end(), data, data + size);
        flush(c); // a broken connection is noticed and closed by poll()
        return true;
    }
    return false;
}

} // namespace loopd::osc
