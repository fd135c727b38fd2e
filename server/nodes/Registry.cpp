#include "server/nodes/Registry.h"

#include "server/engine/Engine.h"
#include "server/engine/MemoryBudget.h"
#include "server/nodes/InputNode.h"
#include "server/nodes/effects/Effects.h"
#include "server/nodes/effects/Eq3Node.h"
#include "server/nodes/looper/Looper.h"
#include "server/nodes/player/Player.h"

namespace loopd {
namespace {

std::unique_ptr<Node> makePlayer(int32_t id, const NodeSetup& s) {
    auto p = std::make_unique<Player>(id);
    if (s.defaultStretch != 0.0f) p->setParam(ParamId::Stretch, s.defaultStretch, 0, false, s.paramContext);
    return p;
}

std::unique_ptr<Node> makeLooper(int32_t id, const NodeSetup& s) {
    const double sr = s.config.sampleRate;
    MemoryLease lease = s.budget.reserve(Looper::memoryBytes(2, sr, s.loopSeconds, s.undoSeconds), "looper " + std::to_string(id));
    auto l = std::make_unique<Looper>(id, 2, sr, s.loopSeconds, s.undoSeconds);
    l->owner = Node::Owner::Looper; // the SooperLooper namespace's: /loop_del removes it, not /n_free
    l->memoryLease = std::move(lease);
    return l;
}

template <class T>
std::unique_ptr<Node> makeEffect(int32_t id, const NodeSetup& s) {
    const EngineConfig& c = s.config;
    if constexpr (std::is_same_v<T, ReverbNode>) return std::make_unique<T>(id, c.sampleRate, c.blockSize);
    else if constexpr (std::is_same_v<T, GainNode>) return std::make_unique<T>(id, c.blockSize);
    else return std::make_unique<T>(id, c.sampleRate, c.numOutputs, c.blockSize);
}

constexpr NodeType kTypes[] = {
    {"player", makePlayer},
    {"input", [](int32_t id, const NodeSetup&) -> std::unique_ptr<Node> { return std::make_unique<InputNode>(id); }},
    {"looper", makeLooper},
    {"eq3", makeEffect<Eq3Node>},
    {"filter", makeEffect<FilterNode>},
    {"delay", makeEffect<DelayNode>},
    {"reverb", makeEffect<ReverbNode>},
    {"stutter", makeEffect<StutterNode>},
    {"limiter", makeEffect<LimiterNode>},
    {"gain", makeEffect<GainNode>},
};

} // namespace

const NodeType* findNodeType(std::string_view name) noexcept {
    for (const NodeType& t : kTypes)
        if (name == t.name) return &t;
    return nullptr;
}

std::string nodeTypeNames() {
    std::string s;
    for (const NodeType& t : kTypes) s += (s.empty() ? "" : ", ") + std::string(t.name);
    return s;
}

} // namespace loopd
