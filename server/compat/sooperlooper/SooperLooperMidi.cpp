// SooperLooper's MIDI binding commands (its control_osc): /get_all_midi_bindings url path →
// `path "add" binding` for each, then `path "done" ""` (slgui asks when it connects);
// /add_midi_binding binding options ("exclusive": the event's other bindings go);
// /remove_midi_binding binding options; /clear_midi_bindings; /load_midi_bindings file options
// ("add": appended, else the table is replaced); /save_midi_bindings file options. Bindings are
// SooperLooper's `.slb` lines (midi::Binding). Files are read and written on the worker.
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "server/compat/sooperlooper/SooperLooper.h"
#include "server/engine/Engine.h"
#include "server/midi/MidiPads.h"
#include "server/nodes/looper/Looper.h"

namespace loopd {


midi::Binding SooperLooper::slBindingArg(Msg& m) {
    const std::string line = m.args.string("binding");
    std::string why;
    const auto b = midi::Binding::parse(line, &why);
    if (!b) throw osc::ArgError("binding '" + line + "': " + why);
    if (b->key() == 0) throw osc::ArgError("binding '" + line + "': unknown event type '" + b->type + "' (cc, n, on, off, pc)");
    if (b->channel < 0 || b->channel > 15 || b->param < 0 || b->param > 127)
        throw osc::ArgError("binding '" + line + "': channel must be 0..15 and the parameter 0..127");
    if (const std::string why2 = bindingTargetProblem(*b); !why2.empty()) throw osc::ArgError("binding '" + line + "': " + why2);
    return *b;
}

void SooperLooper::hSlMidiBindings(Msg& m) {
    const std::string url = m.args.string("return url");
    const std::string path = m.args.string("return path");
    m.args.expectEnd();
    std::vector<midi::Binding> all;
    {
        std::lock_guard<std::mutex> lock(bindingsMutex_);
        all = bindings_.all();
    }
    for (const midi::Binding& b : all) sendToUrl(m.client, url, osc::MessageBuilder(path.c_str()).s("add").s(b.serialize()));
    sendToUrl(m.client, url, osc::MessageBuilder(path.c_str()).s("done").s(""));
}

void SooperLooper::hSlAddMidiBinding(Msg& m) {
    const midi::Binding b = slBindingArg(m);
    const std::string options = m.args.atEnd() ? "" : m.args.string("options");
    m.args.expectEnd();
    {
        std::lock_guard<std::mutex> lock(bindingsMutex_);
        bindings_.add(b, options.find("exclusive") != std::string::npos);
        ++bindingsVersion_;
    }
    done(m.client, m.address);
}

void SooperLooper::hSlRemoveMidiBinding(Msg& m) {
    const midi::Binding b = slBindingArg(m);
    if (!m.args.atEnd()) m.args.string("options");
    m.args.expectEnd();
    bool removed;
    {
        std::lock_guard<std::mutex> lock(bindingsMutex_);
        removed = bindings_.remove(b);
        ++bindingsVersion_;
    }
    if (!removed) throw osc::ArgError("no such binding: " + b.serialize());
    done(m.client, m.address);
}

void SooperLooper::hSlClearMidiBindings(Msg& m) {
    m.args.expectEnd();
    {
        std::lock_guard<std::mutex> lock(bindingsMutex_);
        bindings_.clear();
        ++bindingsVersion_;
    }
    done(m.client, m.address);
}

void SooperLooper::hSlLoadMidiBindings(Msg& m) {
    const std::string file = checkedPath(m, m.args.string("bindings file"), false);
    const std::string options = m.args.atEnd() ? "" : m.args.string("options");
    m.args.expectEnd();
    const uint16_t client = m.client;
    const bool append = options.find("add") != std::string::npos;
    worker_.post([=, this] {
        std::ifstream in(file);
        if (!in) { fail(client, "/load_midi_bindings", "cannot read " + file); return; }
        // Read into a table of its own first: the live one changes in one step.
        midi::BindingTable loaded;
        const auto report = loaded.load(in);
        for (const std::string& p : report.problems) {
            spdlog::warn("MIDI bindings {}: {} (skipped)", file, p);
            fail(client, "/load_midi_bindings", file + ": " + p + " (skipped)");
        }
        // Each binding is checked as /add_midi_binding checks it: unknown commands and controls fail here.
        int kept = 0;
        {
            std::lock_guard<std::mutex> lock(bindingsMutex_);
            if (!append) bindings_.clear();
            ++bindingsVersion_;
            for (const midi::Binding& b : loaded.all()) {
                if (const std::string why = bindingTargetProblem(b); !why.empty()) {
                    fail(client, "/load_midi_bindings", file + ": '" + b.serialize() + "': " + why + " (skipped)");
                    continue;
                }
                bindings_.add(b);
                ++kept;
            }
        }
        spdlog::info("MIDI bindings: {} loaded from {}", kept, file);
        done(client, "/load_midi_bindings");
    });
}

void SooperLooper::hSlSaveMidiBindings(Msg& m) {
    const std::string file = checkedPath(m, m.args.string("bindings file"), true);
    if (!m.args.atEnd()) m.args.string("options");
    m.args.expectEnd();
    const uint16_t client = m.client;
    std::ostringstream text;
    {
        std::lock_guard<std::mutex> lock(bindingsMutex_);
        bindings_.save(text);
    }
    worker_.post([=, this, s = text.str()] {
        std::ofstream out(file);
        out << s;
        out.flush();
        if (!out) { fail(client, "/save_midi_bindings", "cannot write " + file); return; }
        done(client, "/save_midi_bindings");
    });
}

// ---------------------------------------------------------------------------------------------
// Learn, and MIDI through the bindings

namespace {
// SooperLooper's event type of a status byte ("" for what it cannot bind: loopd binds cc, notes
// and program changes).
std::string learnType(uint8_t status) {
    switch (status & 0xf0) {
    case 0x80: case 0x90: return "n";
    case 0xb0: return "cc";
    case 0xc0: return "pc";
    default: return "";
    }
}
} // namespace

void SooperLooper::hSlLearnMidiBinding(Msg& m) {
    const std::string line = m.args.string("binding");
    const std::string options = m.args.string("options");
    const std::string url = m.args.string("return url");
    const std::string path = m.args.string("return path");
    m.args.expectEnd();
    std::string why;
    auto b = midi::Binding::parse(line, &why);
    if (!b) throw osc::ArgError("binding '" + line + "': " + why);
    if (const std::string why2 = bindingTargetProblem(*b); !why2.empty()) throw osc::ArgError("binding '" + line + "': " + why2);
    learn_ = MidiLearn{true, *b, options.find("exclusive") != std::string::npos, url, path, m.client};
    engine_.pauseMidiPads(true);
}

void SooperLooper::hSlGetNextMidiEvent(Msg& m) {
    const std::string url = m.args.string("return url");
    const std::string path = m.args.string("return path");
    m.args.expectEnd();
    getNext_ = MidiLearn{true, {}, false, url, path, m.client};
    engine_.pauseMidiPads(true);
}

void SooperLooper::hSlCancelMidiLearn(Msg& m) {
    const std::string url = m.args.string("return url");
    const std::string path = m.args.string("return path");
    m.args.expectEnd();
    learn_.active = false;
    engine_.pauseMidiPads(getNext_.active);
    sendToUrl(m.client, url, osc::MessageBuilder(path.c_str()).s("learn_cancel").s(""));
}

void SooperLooper::hSlCancelGetNextMidi(Msg& m) {
    const std::string url = m.args.string("return url");
    const std::string path = m.args.string("return path");
    m.args.expectEnd();
    getNext_.active = false;
    engine_.pauseMidiPads(learn_.active);
    sendToUrl(m.client, url, osc::MessageBuilder(path.c_str()).s("next_cancel").s(""));
}

bool SooperLooper::onMidi(const midi::Message& msg, bool padsDone) {
    if (msg.status < 0x80 || msg.status >= 0xf0) return false;
    const std::string type = learnType(msg.status);
    // A learn (or a look at the next event) takes the event; SooperLooper learns from any note
    // event, a release included.
    if ((learn_.active || getNext_.active) && !type.empty()) {
        if (learn_.active) {
            midi::Binding b = learn_.binding;
            b.channel = msg.channel();
            b.type = type;
            b.param = msg.data1;
            LoopCmd c;
            if (loopCmdFromName(b.control.c_str(), c) || b.control == "solo") b.command = (type == "cc" || type == "pc") ? "hit" : "note";
            {
                std::lock_guard<std::mutex> lock(bindingsMutex_);
                bindings_.add(b, learn_.exclusive);
                ++bindingsVersion_;
            }
            learn_.active = false;
            sendToUrl(learn_.client, learn_.url, osc::MessageBuilder(learn_.path.c_str()).s("add").s(b.serialize()));
            sendToUrl(learn_.client, learn_.url, osc::MessageBuilder(learn_.path.c_str()).s("done").s(b.serialize()));
        } else {
            midi::Binding b;
            b.channel = msg.channel();
            b.type = type;
            b.param = msg.data1;
            getNext_.active = false;
            sendToUrl(getNext_.client, getNext_.url, osc::MessageBuilder(getNext_.path.c_str()).s("recv").s(b.serialize()));
        }
        engine_.pauseMidiPads(learn_.active || getNext_.active);
        return true;
    }
    if (type.empty()) return false;
    // Note off is looked up as the note on it ends (SooperLooper keys both as 0x90).
    const int status = (msg.status & 0xf0) == 0x80 ? 0x90 | msg.channel() : msg.status;
    const uint8_t value = (msg.status & 0xf0) == 0xc0 ? 127 : msg.data2;
    std::vector<midi::Binding> hits;
    {
        std::lock_guard<std::mutex> lock(bindingsMutex_);
        if (const auto* list = bindings_.find(status, msg.data1)) hits = *list;
    }
    for (const midi::Binding& b : hits) {
        const midi::BoundAction a = midi::actionFor(b, msg.status, value, toggles_[b.serialize()]);
        if (a.kind == midi::BoundAction::Kind::None || b.control == "scratch") continue;
        if (padsDone && midi::isPadBinding(b)) continue; // the audio thread ran it
        const std::string prefix = "/sl/" + std::to_string(b.instance) + "/";
        using K = midi::BoundAction::Kind;
        if (a.kind == K::Set) {
            runInternal(osc::MessageBuilder((prefix + "set").c_str()).s(b.control).f(a.value));
            continue;
        }
        const char* verb = a.kind == K::Down ? "down" : a.kind == K::Up ? "up" : a.kind == K::UpForce ? "upforce" : "hit";
        runInternal(osc::MessageBuilder((prefix + verb).c_str()).s(b.control));
    }
    return false;
}

namespace {
// How lit a loop command's LED is in a loop state: 127 in the command's own state, 64 while
// recording waits to start or stop (quantized), 0 otherwise; -1 for commands without a state.
int ledFor(const std::string& command, int state) {
    auto on = [&](std::initializer_list<LoopState> states) {
        for (LoopState s : states)
            if (state == static_cast<int>(s)) return 127;
        return 0;
    };
    if (command == "record") {
        if (state == static_cast<int>(LoopState::WaitStart) || state == static_cast<int>(LoopState::WaitStop)) return 64;
        return on({LoopState::Recording});
    }
    if (command == "overdub") return on({LoopState::Overdubbing});
    if (command == "multiply") return on({LoopState::Multiplying});
    if (command == "insert") return on({LoopState::Inserting});
    if (command == "replace") return on({LoopState::Replacing});
    if (command == "substitute") return on({LoopState::Substitute});
    if (command == "mute" || command == "mute_on" || command == "mute_off") return on({LoopState::Muted});
    if (command == "pause" || command == "pause_on" || command == "pause_off") return on({LoopState::Paused});
    if (command == "trigger") return on({LoopState::Playing});
    if (command == "oneshot") return on({LoopState::OneShot});
    return -1;
}
} // namespace

void SooperLooper::sendFeedback() {
    std::vector<midi::Binding> all;
    {
        std::lock_guard<std::mutex> lock(bindingsMutex_);
        all = bindings_.all();
    }
    for (const midi::Binding& b : all) {
        if (b.command == "set" || (b.type != "n" && b.type != "on" && b.type != "off" && b.type != "cc")) continue;
        // The loop it shows: its own; for all loops (-1) or the selected one (-3), the selected loop.
        const int loop = b.instance >= 0 ? b.instance : (slSelected_ >= 0 ? slSelected_ : 0);
        if (loop >= static_cast<int>(slLoops_.size())) continue;
        const int value = ledFor(b.control, slLoops_[static_cast<size_t>(loop)].lastState);
        if (value < 0) continue;
        const auto key = std::make_pair(b.serialize(), loop);
        if (auto it = feedbackSent_.find(key); it != feedbackSent_.end() && it->second == value) continue;
        midi::MidiEvent e;
        e.sample = -1;
        e.size = 3;
        e.bytes[0] = static_cast<uint8_t>((b.type == "cc" ? 0xb0 : 0x90) | (b.channel & 0x0f));
        e.bytes[1] = static_cast<uint8_t>(b.param & 0x7f);
        e.bytes[2] = static_cast<uint8_t>(value);
        if (engine_.sendMidi(e)) feedbackSent_[key] = value;
    }
}

void SooperLooper::compilePads() {
    std::vector<int32_t> key;
    std::vector<midi::Binding> all;
    {
        std::lock_guard<std::mutex> lock(bindingsMutex_);
        // Called after every block offline: compare in place before building anything.
        const auto same = [&] {
            if (padsKey_.size() != slLoops_.size() + 1 || padsKey_[0] != static_cast<int32_t>(bindingsVersion_)) return false;
            for (size_t i = 0; i < slLoops_.size(); ++i)
                if (padsKey_[i + 1] != slLoops_[i].node) return false;
            return true;
        };
        if (same()) return;
        key.push_back(static_cast<int32_t>(bindingsVersion_));
        for (const SlLoop& loop : slLoops_) key.push_back(loop.node);
        all = bindings_.all();
    }
    auto table = std::make_unique<midi::MidiPadTable>();
    for (const midi::Binding& b : all) {
        LoopCmd c;
        if (!midi::isPadBinding(b) || !loopCmdFromName(b.control.c_str(), c)) continue;
        midi::MidiPad pad;
        pad.key = b.key();
        pad.binding = b;
        pad.sustainable = isSustainable(c);
        for (size_t i = 0; i < slLoops_.size() && pad.numTargets < midi::MidiPad::kMaxTargets; ++i) {
            if (b.instance >= 0 && static_cast<size_t>(b.instance) != i) continue;
            pad.targets[pad.numTargets++].unit = Looper::commandFor(slLoops_[i].node, c, 0.0f);
        }
        if (pad.numTargets > 0) table->pads.push_back(std::move(pad));
    }
    std::stable_sort(table->pads.begin(), table->pads.end(), [](const midi::MidiPad& x, const midi::MidiPad& y) { return x.key < y.key; });
    Command cmd;
    cmd.address = "/load_midi_bindings";
    cmd.body = cmd::MidiPads{table.get()};
    if (!engine_.pushCommand(std::move(cmd), false)) return; // the queue is full: next pass
    table.release(); // the engine's now
    padsKey_ = std::move(key);
}

} // namespace loopd
