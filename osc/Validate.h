#pragma once
// Validation of a received OSC packet before anything decodes it. oscpack trusts sizes and type
// tags it has not checked against the data (a blob size or an int64 past the end of the packet
// reads out of bounds), so every packet from the network, a score or a test goes through
// checkPacket() first: sizes, 4-byte alignment, string and blob bounds, every type tag against
// the bytes it needs, bundle element sizes and nesting depth.
//
// Threads: [any]; pure function of its input, no allocation unless it reports a failure.
#include <cstddef>
#include <cstdint>
#include <string>

namespace loopd::osc {

// What a valid packet holds: an upper bound of the work it asks for.
struct PacketShape {
    size_t messages = 0;   // messages, counted through every nested bundle
    size_t arguments = 0;  // arguments of all those messages
    int depth = 0;         // deepest bundle nesting (0: a bare message)
};

constexpr int kMaxBundleDepth = 8;

// Empty when `data[0..size)` is a well-formed OSC message or bundle (bundles nested at most
// kMaxBundleDepth deep); otherwise the reason, a sentence for the /fail reply. `shape`, when
// given, receives what the packet holds.
std::string checkPacket(const char* data, size_t size, PacketShape* shape = nullptr);

} // namespace loopd::osc
