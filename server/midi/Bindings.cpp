// MIDI bindings in SooperLooper's .slb format (Bindings.h).
#include "server/midi/Bindings.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace loopd::midi {

namespace {
const char* styleName(Binding::Style s) {
    switch (s) {
    case Binding::Style::Gain: return "gain";
    case Binding::Style::Toggle: return "toggle";
    case Binding::Style::Integer: return "integer";
    case Binding::Style::Normal: break;
    }
    return "norm";
}
} // namespace

int Binding::statusByte() const noexcept {
    int base = 0;
    if (type == "cc") base = 0xb0;
    else if (type == "n" || type == "on" || type == "off") base = 0x90; // as SooperLooper keys them
    else if (type == "pc") base = 0xc0;
    return base ? base + (channel & 0x0f) : 0;
}

std::string Binding::serialize() const {
    char line[256];
    std::snprintf(line, sizeof line, "%d %s %d  %s %s %d  %.9g %.9g  %s %d %d", channel, type.c_str(), param, command.c_str(),
                  control.c_str(), instance, static_cast<double>(lbound), static_cast<double>(ubound), styleName(style), dataMin, dataMax);
    return line;
}

std::optional<Binding> Binding::parse(const std::string& line, std::string* why) {
    // The fields as SooperLooper reads them (scanf: a type of at most 3 characters, names of at
    // most 30, a style of at most 10; absent trailing fields keep their defaults).
    int channel = 0, param = 0, instance = -1, dmin = 0, dmax = 127;
    float lb = 0.0f, ub = 1.0f;
    char type[4] = {0}, command[31] = {0}, control[31] = {0}, style[11] = {0};
    const int got = std::sscanf(line.c_str(), "%d %3s %d %30s %30s %d %g %g %10s %d %d", &channel, type, &param, command, control, &instance,
                                &lb, &ub, style, &dmin, &dmax);
    if (got < 5) {
        if (why) *why = "needs at least 'channel type param command control', got " + std::to_string(got < 0 ? 0 : got) + " fields";
        return std::nullopt;
    }
    Binding b;
    b.channel = channel;
    b.type = type;
    b.param = param;
    b.command = command;
    b.control = control;
    b.instance = instance;
    b.lbound = lb;
    b.ubound = ub;
    b.dataMin = dmin;
    b.dataMax = dmax;
    b.style = style[0] == 'g' ? Style::Gain : style[0] == 't' ? Style::Toggle : style[0] == 'i' ? Style::Integer : Style::Normal;
    return b;
}

float faderPositionToGain(float position) noexcept {
    if (!(position > 0.0f)) return 0.0f;
    // +6 dB at the top; the eighth root of the position spread over 198 dB below it.
    return static_cast<float>(std::exp2((std::sqrt(std::sqrt(std::sqrt(static_cast<double>(position)))) * 198.0 - 192.0) / 6.0));
}

BoundAction actionFor(const Binding& b, uint8_t status, uint8_t value, float& toggleState) noexcept {
    if ((status & 0xf0) == 0x80) value = 0; // note off: a note on of value 0
    const int lo = std::min(b.dataMin, b.dataMax), hi = std::max(b.dataMin, b.dataMax);
    const int v = std::clamp<int>(value, lo, hi);
    const float ratio = b.dataMax == b.dataMin ? 0.0f : static_cast<float>(v - b.dataMin) / static_cast<float>(b.dataMax - b.dataMin);
    float scaled = b.lbound + ratio * (b.ubound - b.lbound);
    switch (b.style) {
    case Binding::Style::Gain: scaled = faderPositionToGain(scaled); break;
    case Binding::Style::Integer: scaled = std::nearbyint(scaled); break;
    case Binding::Style::Toggle:
        scaled = toggleState != b.ubound ? b.ubound : b.lbound;
        toggleState = scaled;
        break;
    case Binding::Style::Normal: break;
    }
    BoundAction a;
    a.value = scaled;
    const bool press = scaled > 0.0f;
    if (b.command == "set") {
        if ((b.type == "off" && press) || (b.type == "on" && !press)) return a;
        a.kind = BoundAction::Kind::Set;
    } else if (b.command == "note") {
        if (press ? b.type == "off" : b.type == "on") return a;
        a.kind = press ? BoundAction::Kind::Down : BoundAction::Kind::Up;
    } else if (b.command == "susnote") {
        a.kind = press ? BoundAction::Kind::Down : BoundAction::Kind::UpForce;
    } else if (b.command == "down") {
        a.kind = BoundAction::Kind::Down;
    } else if (b.command == "up") {
        a.kind = BoundAction::Kind::Up;
    } else if (b.command == "upforce") {
        a.kind = BoundAction::Kind::UpForce;
    } else if (b.command == "hit") {
        a.kind = BoundAction::Kind::Hit;
    }
    return a;
}

BindingTable::LoadReport BindingTable::load(std::istream& in, bool append) {
    LoadReport r;
    if (!append) clear();
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        std::string why;
        const auto b = Binding::parse(line, &why);
        if (!b) { r.problems.push_back("line " + std::to_string(number) + ": " + why); continue; }
        if (!add(*b)) { r.problems.push_back("line " + std::to_string(number) + ": unknown event type '" + b->type + "' (cc, n, on, off, pc)"); continue; }
        ++r.loaded;
    }
    return r;
}

void BindingTable::save(std::ostream& out) const {
    for (const auto& [key, list] : table_)
        for (const Binding& b : list) out << b.serialize() << '\n';
}

bool BindingTable::add(const Binding& b, bool exclusive) {
    const int key = b.key();
    if (key == 0) return false;
    auto& list = table_[key];
    if (exclusive) list.clear();
    list.push_back(b);
    return true;
}

bool BindingTable::remove(const Binding& b) {
    const auto it = table_.find(b.key());
    if (it == table_.end()) return false;
    for (auto e = it->second.begin(); e != it->second.end(); ++e)
        if (*e == b) {
            it->second.erase(e);
            if (it->second.empty()) table_.erase(it);
            return true;
        }
    return false;
}

std::vector<Binding> BindingTable::all() const {
    std::vector<Binding> out;
    for (const auto& [key, list] : table_) out.insert(out.end(), list.begin(), list.end());
    return out;
}

const std::vector<Binding>* BindingTable::find(int statusByte, int param) const {
    const auto it = table_.find((statusByte << 8) | (param & 0x7f));
    return it == table_.end() ? nullptr : &it->second;
}

size_t BindingTable::size() const {
    size_t n = 0;
    for (const auto& [key, list] : table_) n += list.size();
    return n;
}

} // namespace loopd::midi
