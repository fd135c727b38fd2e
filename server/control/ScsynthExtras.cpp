// scsynth's /clearSched and the /g_dumpTree printout (the other commands of an sclang session
// beyond loopd's core live with their kind: Nodes.cpp, Buffers.cpp). Replies and argument forms
// are scsynth's (Server Command Reference).
//
// Threads: control thread.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "server/engine/BufferData.h"
#include "server/control/Controller.h"

namespace loopd {

void Controller::registerScsynthExtras() {
    on("/clearSched", &Controller::hClearSched);
}

// ---------------------------------------------------------------------------------------------
// Nodes

void Controller::dumpTree(const TreeSnapshot& s) {
    // As scsynth prints it: a line per node, indented by depth.
    spdlog::info("NODE TREE Group {}", s.rootId);
    std::vector<int> left; // children still to come at each depth
    for (size_t k = 0; k < s.entries.size(); ++k) {
        const auto& e = s.entries[k];
        if (k == 0) {
            left.push_back(std::max(0, e.numChildren));
            continue;
        }
        const std::string indent(3 * left.size(), ' ');
        if (e.numChildren >= 0) {
            spdlog::info("{}{} group", indent, e.id);
        } else {
            const char* kind = Node::kindName(static_cast<Node::Kind>(e.kind));
            if (s.withControls) spdlog::info("{}{} {}\n{}  buf: {} gain: {}", indent, e.id, kind, indent, e.buf, e.gain);
            else spdlog::info("{}{} {}", indent, e.id, kind);
        }
        if (!left.empty()) --left.back();
        if (e.numChildren > 0) left.push_back(e.numChildren);
        while (!left.empty() && left.back() == 0) left.pop_back();
    }
    if (s.truncated) spdlog::warn("/g_dumpTree: tree too large, cut short");
}

void Controller::hClearSched(Msg& m) {
    m.args.expectEnd();
    Msg now{m.address, m.args, 0, m.client};
    push(now, cmd::ClearSched{});
}

// ---------------------------------------------------------------------------------------------
// Control buses

// ---------------------------------------------------------------------------------------------
// Buffer samples. An index is a sample of the interleaved buffer (frame * channels + channel),
// as in scsynth.

} // namespace loopd
