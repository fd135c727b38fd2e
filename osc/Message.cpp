#include "osc/Message.h"

#include <algorithm>
#include <climits>
#include <cmath>

namespace loopd::osc {

ArgReader::ArgReader(const ::osc::ReceivedMessage& m)
    : it_(m.ArgumentsBegin()), end_(m.ArgumentsEnd()), remaining_(m.ArgumentCount()) {}

namespace {
std::string where(int index, const char* what) {
    return "argument " + std::to_string(index + 1) + " (" + what + ")";
}
} // namespace

bool ArgReader::isString() const noexcept {
    return it_ != end_ && (it_->IsString() || it_->IsSymbol());
}

bool ArgReader::isNumber() const noexcept {
    return it_ != end_ && (it_->IsInt32() || it_->IsInt64() || it_->IsFloat() || it_->IsDouble());
}

int32_t ArgReader::int32(const char* what) {
    if (it_ == end_) throw ArgError("missing " + where(index_, what));
    const auto& a = *it_;
    double v;
    if (a.IsInt32()) v = a.AsInt32Unchecked();
    else if (a.IsInt64()) v = static_cast<double>(a.AsInt64Unchecked());
    else if (a.IsFloat()) v = a.AsFloatUnchecked();
    else if (a.IsDouble()) v = a.AsDoubleUnchecked();
    else if (a.IsBool()) v = a.AsBoolUnchecked() ? 1 : 0;
    else throw ArgError(where(index_, what) + " must be an integer, got type '" + std::string(1, a.TypeTag()) + "'");
    if (!std::isfinite(v)) throw ArgError(where(index_, what) + " is not a finite number");
    if (v != std::floor(v)) throw ArgError(where(index_, what) + " must be a whole number, got " + std::to_string(v));
    if (v < -2147483648.0 || v > 2147483647.0) throw ArgError(where(index_, what) + " is out of the 32-bit range");
    ++it_; ++index_; --remaining_;
    return static_cast<int32_t>(v);
}

float ArgReader::number(const char* what) {
    if (it_ == end_) throw ArgError("missing " + where(index_, what));
    const auto& a = *it_;
    double v;
    if (a.IsInt32()) v = a.AsInt32Unchecked();
    else if (a.IsInt64()) v = static_cast<double>(a.AsInt64Unchecked());
    else if (a.IsFloat()) v = a.AsFloatUnchecked();
    else if (a.IsDouble()) v = a.AsDoubleUnchecked();
    else if (a.IsBool()) v = a.AsBoolUnchecked() ? 1 : 0;
    else throw ArgError(where(index_, what) + " must be a number, got type '" + std::string(1, a.TypeTag()) + "'");
    if (!std::isfinite(v) || std::fabs(v) > 3.0e38) throw ArgError(where(index_, what) + " is not a finite number");
    ++it_; ++index_; --remaining_;
    return static_cast<float>(v);
}

std::string ArgReader::string(const char* what) {
    if (it_ == end_) throw ArgError("missing " + where(index_, what));
    const auto& a = *it_;
    std::string s;
    if (a.IsString()) s = a.AsStringUnchecked();
    else if (a.IsSymbol()) s = a.AsSymbolUnchecked();
    else throw ArgError(where(index_, what) + " must be a string, got type '" + std::string(1, a.TypeTag()) + "'");
    ++it_; ++index_; --remaining_;
    return s;
}

void ArgReader::expectEnd() {
    if (it_ != end_) throw ArgError("too many arguments (" + std::to_string(remaining_) + " left over)");
}

std::vector<char> ArgReader::takeTrailingBlob() {
    if (it_ == end_) return {};
    auto last = it_;
    for (auto k = it_; k != end_; ++k) last = k;
    if (!last->IsBlob()) return {};
    const void* data = nullptr;
    ::osc::osc_bundle_element_size_t size = 0;
    last->AsBlobUnchecked(data, size);
    std::vector<char> out(static_cast<const char*>(data), static_cast<const char*>(data) + size);
    end_ = last;
    --remaining_;
    return out;
}

MessageBuilder::MessageBuilder(const char* address) : address_(address) {}
MessageBuilder& MessageBuilder::i(int32_t v) { args_.push_back({'i', v, 0, {}}); return *this; }
MessageBuilder& MessageBuilder::f(float v) { args_.push_back({'f', 0, v, {}}); return *this; }
MessageBuilder& MessageBuilder::d(double v) { args_.push_back({'d', 0, v, {}}); return *this; }
MessageBuilder& MessageBuilder::h(int64_t v) { args_.push_back({'h', v, 0, {}}); return *this; }
MessageBuilder& MessageBuilder::s(const std::string& v) { args_.push_back({'s', 0, 0, v}); return *this; }

std::vector<char> MessageBuilder::bytes(bool float32Only) const {
    size_t size = address_.size() + 8 + args_.size() + 8;
    for (const Arg& a : args_) size += a.type == 's' ? a.s.size() + 8 : 8;
    std::vector<char> buf(size + 64);
    ::osc::OutboundPacketStream p(buf.data(), buf.size());
    p << ::osc::BeginMessage(address_.c_str());
    for (const Arg& a : args_) {
        switch (a.type) {
        case 'i': p << static_cast<::osc::int32>(a.i); break;
        case 'f': p << static_cast<float>(a.d); break;
        case 'd':
            if (float32Only) p << static_cast<float>(a.d);
            else p << a.d;
            break;
        case 'h':
            if (float32Only) p << static_cast<::osc::int32>(std::clamp<int64_t>(a.i, INT32_MIN, INT32_MAX));
            else p << static_cast<::osc::int64>(a.i);
            break;
        default: p << a.s.c_str(); break;
        }
    }
    p << ::osc::EndMessage;
    return std::vector<char>(p.Data(), p.Data() + p.Size());
}

} // namespace loopd::osc
