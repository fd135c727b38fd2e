#include "server/midi/MidiModule.h"

#include "server/compat/sooperlooper/SooperLooper.h"
#include "server/engine/Engine.h"

namespace loopd {

MidiModule::MidiModule(Controller& c, SooperLooper& sooperLooper) : Module(c), sooperLooper_(sooperLooper) {}

void MidiModule::poll() {
    midi::MidiEvent e;
    while (engine_.popMidiIn(e)) {
        ++received_;
        midi::Message m;
        m.status = e.bytes[0];
        m.size = e.size;
        if (e.size > 1) m.data1 = e.bytes[1] & 0x7f;
        if (e.size > 2) m.data2 = e.bytes[2] & 0x7f;
        if (m.size != 1 + midi::MidiParser::dataBytes(m.status) && m.status < 0xf8) continue; // not whole
        if (m.status < 0xf0) sooperLooper_.onMidi(m);
    }
}

} // namespace loopd
