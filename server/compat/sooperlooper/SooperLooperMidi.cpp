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
    }
    if (!removed) throw osc::ArgError("no such binding: " + b.serialize());
    done(m.client, m.address);
}

void SooperLooper::hSlClearMidiBindings(Msg& m) {
    m.args.expectEnd();
    {
        std::lock_guard<std::mutex> lock(bindingsMutex_);
        bindings_.clear();
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

} // namespace loopd
