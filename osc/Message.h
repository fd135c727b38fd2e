#pragma once
// Reading OSC arguments with clear errors, and building replies. Lenient where clients differ
// (Pd sends every number as a float; Max and SuperCollider send ints): an int parameter accepts
// an integral float, a float parameter accepts an int. NaN and infinity are always refused.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <osc/OscOutboundPacketStream.h>
#include <osc/OscReceivedElements.h>

namespace loopd::osc {

// Thrown by ArgReader (control thread only) with the human reason for the /fail reply.
struct ArgError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class ArgReader {
public:
    explicit ArgReader(const ::osc::ReceivedMessage& m);
    bool atEnd() const noexcept { return it_ == end_; }
    size_t remaining() const noexcept { return remaining_; }
    int32_t int32(const char* what);
    float number(const char* what);           // finite float
    std::string string(const char* what);
    bool isString() const noexcept;
    bool isNumber() const noexcept;
    std::optional<int32_t> optInt(const char* what) { return atEnd() ? std::nullopt : std::optional(int32(what)); }
    std::optional<float> optNumber(const char* what) { return atEnd() ? std::nullopt : std::optional(number(what)); }
    std::optional<std::string> optString(const char* what) { return atEnd() ? std::nullopt : std::optional(string(what)); }
    void expectEnd();
    // scsynth's completion message: when the last argument is a blob, it is taken off the end
    // (the reader then ends before it) and returned; else empty.
    std::vector<char> takeTrailingBlob();

private:
    ::osc::ReceivedMessageArgumentIterator it_, end_;
    size_t remaining_;
    int index_ = 0;
};

// A reply under construction; grows as needed (control thread only).
class MessageBuilder {
public:
    explicit MessageBuilder(const char* address);
    MessageBuilder& i(int32_t v);
    MessageBuilder& f(float v);
    MessageBuilder& d(double v);
    MessageBuilder& h(int64_t v);
    MessageBuilder& s(const std::string& v);
    // The finished packet. `float32Only`: every double becomes a float32 and every int64 an
    // int32 (clamped), for clients that parse only those (Pd's [oscparse]).
    std::vector<char> bytes(bool float32Only = false) const;

private:
    struct Arg { char type; int64_t i; double d; std::string s; };
    std::string address_;
    std::vector<Arg> args_;
};

} // namespace loopd::osc
