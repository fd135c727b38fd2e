#pragma once
// The node types /s_new can make, in one table (scsynth's plugin table, supernova's
// synth_factory): a new node type is one entry in Registry.cpp. [control] only: nodes are built
// and prepared (stretchers, memory) on the control thread, before the audio thread sees them.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace loopd {

class Node;
class MemoryBudget;
class StretchWorker;
struct EngineConfig;
struct ProcessContext;

// What building a node may need: the engine's format, the memory budget its buffers are charged
// to, the stretch worker its stretcher runs on, and the server's options for the types that
// have some.
struct NodeSetup {
    const EngineConfig& config;
    const ProcessContext& paramContext;     // engine constants for validating parameters here
    MemoryBudget& budget;
    StretchWorker* stretchWorker = nullptr; // null: stretchers step on the audio thread (offline)
    double loopSeconds = 0.0;               // looper: the longest loop
    double undoSeconds = 0.0;               // looper: undo history
    float defaultStretch = 0.0f;            // player: the stretch method of a new player (0: varispeed)
};

struct NodeType {
    const char* name;
    // Builds the node with its creation defaults; throws MemoryBudget's error when the budget
    // cannot hold it. Parameters from the message come after, then Node::prepare.
    std::unique_ptr<Node> (*make)(int32_t id, const NodeSetup& setup);
};

// The type called `name`, or null.
const NodeType* findNodeType(std::string_view name) noexcept;
// Every type's name, comma-separated ("player, input, ..."), for the message of an unknown one.
std::string nodeTypeNames();

} // namespace loopd
