#include "osc/Validate.h"

#include <cstring>

namespace loopd::osc {
namespace {

uint32_t bigEndian32(const char* p) {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    return (uint32_t(u[0]) << 24) | (uint32_t(u[1]) << 16) | (uint32_t(u[2]) << 8) | uint32_t(u[3]);
}

// Bytes a padded OSC string starting at `p` occupies within `left` bytes (its NUL included,
// rounded up to 4), or 0 when no NUL lies within the bytes available or the padding is not all
// NULs (oscpack finds a string's end by its last padding byte: both must agree).
size_t paddedString(const char* p, size_t left) {
    const void* nul = std::memchr(p, '\0', left);
    if (!nul) return 0;
    const size_t len = static_cast<size_t>(static_cast<const char*>(nul) - p) + 1;
    const size_t padded = (len + 3) & ~size_t(3);
    if (padded > left) return 0;
    for (size_t k = len; k < padded; ++k)
        if (p[k] != '\0') return 0;
    return padded;
}

class Checker {
public:
    explicit Checker(PacketShape& shape) : shape_(shape) {}

    std::string packet(const char* p, size_t size, int depth) {
        if (size == 0) return "empty packet";
        if (size % 4 != 0) return "size " + std::to_string(size) + " is not a multiple of 4";
        if (size >= 8 && std::memcmp(p, "#bundle", 8) == 0) return bundle(p, size, depth);
        return message(p, size);
    }

private:
    std::string bundle(const char* p, size_t size, int depth) {
        if (depth >= kMaxBundleDepth) return "bundles nested deeper than " + std::to_string(kMaxBundleDepth);
        if (depth + 1 > shape_.depth) shape_.depth = depth + 1;
        if (size < 16) return "bundle of " + std::to_string(size) + " bytes has no room for its time tag";
        size_t pos = 16;
        int index = 0;
        while (pos < size) {
            ++index;
            if (size - pos < 4) return "bundle element " + std::to_string(index) + " has a truncated size field";
            const uint32_t n = bigEndian32(p + pos);
            pos += 4;
            if (n == 0) return "bundle element " + std::to_string(index) + " is empty";
            if (n % 4 != 0) return "bundle element " + std::to_string(index) + " size " + std::to_string(n) + " is not a multiple of 4";
            if (n > size - pos)
                return "bundle element " + std::to_string(index) + " claims " + std::to_string(n) + " bytes, " +
                       std::to_string(size - pos) + " are left";
            std::string why = packet(p + pos, n, depth + 1);
            if (!why.empty()) return why;
            pos += n;
        }
        return {};
    }

    std::string message(const char* p, size_t size) {
        ++shape_.messages;
        size_t addr = 4; // scsynth's integer command numbers: a big-endian int32 below 2^24
        if (p[0] != '\0') {
            if (p[0] != '/') return "neither a message (address must start with '/') nor a bundle";
            addr = paddedString(p, size);
            if (addr == 0) return "address is not a terminated, NUL-padded string within the packet";
        }
        if (addr == size) return {}; // no type tag string: an old-style message without arguments
        const char* tags = p + addr;
        if (tags[0] != ',') return "type tag string does not start with ','";
        const size_t tagBytes = paddedString(tags, size - addr);
        if (tagBytes == 0) return "type tag string is not terminated and NUL-padded within the packet";
        const size_t numTags = std::strlen(tags) - 1;
        size_t pos = addr + tagBytes;
        int arrayDepth = 0;
        for (size_t k = 0; k < numTags; ++k) {
            const char t = tags[1 + k];
            const size_t left = size - pos;
            size_t need = 0;
            switch (t) {
            case 'i': case 'f': case 'c': case 'r': case 'm': need = 4; break;
            case 'h': case 't': case 'd': need = 8; break;
            case 'T': case 'F': case 'N': case 'I': need = 0; break;
            case '[': ++arrayDepth; continue;
            case ']':
                if (--arrayDepth < 0) return "type tags close an array that was not opened";
                continue;
            case 's': case 'S':
                need = paddedString(p + pos, left);
                if (need == 0) return argument(k, t) + " is not a terminated, NUL-padded string within the packet";
                break;
            case 'b': {
                if (left < 4) return argument(k, t) + " has no room for its size";
                const uint32_t n = bigEndian32(p + pos);
                const uint64_t padded = (uint64_t(n) + 3) & ~uint64_t(3);
                if (n > 0x7fffffffu || padded > left - 4)
                    return argument(k, t) + " claims " + std::to_string(n) + " bytes, " + std::to_string(left - 4) + " are left";
                need = 4 + static_cast<size_t>(padded);
                break;
            }
            default:
                return "unknown type tag '" + printable(t) + "' (argument " + std::to_string(k + 1) + ")";
            }
            if (need > left)
                return argument(k, t) + " needs " + std::to_string(need) + " bytes, " + std::to_string(left) + " are left";
            pos += need;
            ++shape_.arguments;
        }
        if (arrayDepth != 0) return "type tags open an array that is not closed";
        if (pos != size) return std::to_string(size - pos) + " bytes follow the last argument";
        return {};
    }

    static std::string printable(char t) {
        if (t >= 0x21 && t < 0x7f) return std::string(1, t);
        static const char* hex = "0123456789abcdef";
        const auto u = static_cast<unsigned char>(t);
        return std::string("\\x") + hex[u >> 4] + hex[u & 15];
    }
    static std::string argument(size_t k, char t) {
        return "argument " + std::to_string(k + 1) + " (type '" + printable(t) + "')";
    }

    PacketShape& shape_;
};

} // namespace

std::string checkPacket(const char* data, size_t size, PacketShape* shape) {
    PacketShape local;
    PacketShape& s = shape ? *shape : local;
    s = PacketShape{};
    if (!data) return "empty packet";
    return Checker(s).packet(data, size, 0);
}

} // namespace loopd::osc
