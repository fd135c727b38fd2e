#include "server/midi/MidiModule.h"

#include <cmath>
#include <sstream>

#include "server/compat/sooperlooper/SooperLooper.h"
#include "server/engine/Engine.h"

namespace loopd {

MidiModule::MidiModule(Controller& c, SooperLooper& sooperLooper) : Module(c), sooperLooper_(sooperLooper) {
    on("/midi_osc", &MidiModule::hMidiOsc);
    on("/midi_osc_remove", &MidiModule::hMidiOscRemove);
    on("/midi_osc_list", &MidiModule::hMidiOscList);
}

int MidiModule::eventKey(const std::string& event, std::string& normalized) {
    std::istringstream in(event);
    int channel = -1, param = -1;
    std::string type, extra;
    if (!(in >> channel >> type >> param) || (in >> extra)) return 0;
    if (channel < 0 || channel > 15 || param < 0 || param > 127) return 0;
    int kind = 0;
    if (type == "cc") kind = 0xb0;
    else if (type == "n") kind = 0x90;
    else if (type == "pc") kind = 0xc0;
    else return 0;
    normalized = std::to_string(channel) + " " + type + " " + std::to_string(param);
    return ((kind | channel) << 8) | param;
}

void MidiModule::hMidiOsc(Msg& m) {
    OscBinding b;
    const std::string event = m.args.string("MIDI event");
    b.key = eventKey(event, b.event);
    if (!b.key) throw osc::ArgError("MIDI event '" + event + "': give \"channel type number\" (channel 0..15, type cc, n or pc, number 0..127)");
    b.lo = m.args.number("low value");
    b.hi = m.args.number("high value");
    b.address = m.args.string("OSC address");
    if (b.address.empty() || b.address[0] != '/') throw osc::ArgError("OSC address '" + b.address + "' must start with /");
    if (b.address.rfind("/midi_osc", 0) == 0) throw osc::ArgError("a MIDI binding cannot change the MIDI bindings");
    while (!m.args.atEnd()) {
        if (m.args.isString()) {
            b.args.emplace_back(m.args.string("argument"));
        } else {
            const float v = m.args.number("argument");
            if (std::nearbyint(v) == v && std::fabs(v) < 2147483647.0f) b.args.emplace_back(static_cast<int32_t>(v));
            else b.args.emplace_back(v);
        }
    }
    oscBindings_.push_back(std::move(b));
    done(m.client, m.address);
}

void MidiModule::hMidiOscRemove(Msg& m) {
    const std::string event = m.args.string("MIDI event");
    const std::string address = m.args.atEnd() ? "" : m.args.string("OSC address");
    m.args.expectEnd();
    std::string normalized;
    const int key = eventKey(event, normalized);
    if (!key) throw osc::ArgError("MIDI event '" + event + "': give \"channel type number\"");
    const size_t before = oscBindings_.size();
    std::erase_if(oscBindings_, [&](const OscBinding& b) { return b.key == key && (address.empty() || b.address == address); });
    if (oscBindings_.size() == before) throw osc::ArgError("no MIDI binding of '" + normalized + "'" + (address.empty() ? "" : " to " + address));
    done(m.client, m.address);
}

void MidiModule::hMidiOscList(Msg& m) {
    m.args.expectEnd();
    for (const OscBinding& b : oscBindings_) {
        osc::MessageBuilder r("/midi_osc.reply");
        r.s(b.event).f(b.lo).f(b.hi).s(b.address);
        for (const auto& a : b.args) std::visit([&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, int32_t>) r.i(v);
            else if constexpr (std::is_same_v<T, float>) r.f(v);
            else r.s(v);
        }, a);
        send(m.client, r);
    }
    done(m.client, m.address);
}

void MidiModule::runOscBindings(const midi::Message& m) {
    if (oscBindings_.empty()) return;
    const uint8_t kind = m.kind();
    uint8_t value = 0;
    if (kind == 0x90) {
        if (m.data2 == 0) return; // a release
        value = m.data2;
    } else if (kind == 0xb0) {
        value = m.data2;
    } else if (kind == 0xc0) {
        value = 127;
    } else {
        return;
    }
    const int key = (m.status << 8) | m.data1;
    for (const OscBinding& b : oscBindings_) {
        if (b.key != key) continue;
        const float scaled = b.lo + (b.hi - b.lo) * static_cast<float>(value) / 127.0f;
        osc::MessageBuilder out(b.address.c_str());
        for (const auto& a : b.args) std::visit([&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, int32_t>) out.i(v);
            else if constexpr (std::is_same_v<T, float>) out.f(v);
            else if (v == "$") out.f(scaled);
            else out.s(v);
        }, a);
        runInternal(out);
    }
}

void MidiModule::poll() {
    midi::MidiEvent e;
    while (engine_.popMidiIn(e)) {
        ++received_;
        midi::Message m;
        m.status = e.bytes[0];
        m.size = e.size;
        if (e.size > 1) m.data1 = e.bytes[1] & 0x7f;
        if (e.size > 2) m.data2 = e.bytes[2] & 0x7f;
        if (m.status >= 0xf0 || m.size != 1 + midi::MidiParser::dataBytes(m.status)) continue; // not a whole channel message
        if (sooperLooper_.onMidi(m, e.flags & midi::MidiEvent::kPadsDone)) continue; // a learn took it
        runOscBindings(m);
    }
}

} // namespace loopd
