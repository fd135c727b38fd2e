// The node module (Nodes.h).
#include "server/control/Nodes.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "server/engine/Group.h"

namespace loopd {

Nodes::Nodes(Controller& c) : Module(c) {
    on("/s_new", &Nodes::hSNew);
    on("/g_new", &Nodes::hGNew);
    on("/n_set", &Nodes::hNSet);
    on("/n_ramp", &Nodes::hNRamp);
    on("/n_free", &Nodes::hNFree);
    on("/n_run", &Nodes::hNRun);
    on("/n_before", &Nodes::hNBefore);
    on("/n_after", &Nodes::hNAfter);
    on("/n_query", &Nodes::hNQuery);
    on("/g_freeAll", &Nodes::hGFreeAll);
    on("/g_deepFree", &Nodes::hGDeepFree);
    on("/g_queryTree", &Nodes::hGQueryTree);
    on("/g_dumpTree", &Nodes::hGDumpTree);
    on("/n_trace", &Nodes::hNTrace);
    on("/s_get", &Nodes::hSGet);
    on("/n_map", &Nodes::hNMap);
    on("/c_set", &Nodes::hCSet);
    on("/c_setn", &Nodes::hCSetn);
    on("/c_get", &Nodes::hCGet);
    on("/c_getn", &Nodes::hCGetn);
}

ParamId Nodes::paramArg(osc::ArgReader& args, std::string& name) {
    name = args.string("parameter name");
    const auto p = paramFromName(name);
    if (!p) throw osc::ArgError("unknown parameter '" + name + "'");
    return *p;
}

void Nodes::applyParams(Msg& m, Node& node) {
    std::string name;
    while (!m.args.atEnd()) {
        const ParamId id = paramArg(m.args, name);
        const float value = paramValue(m.args, id, name);
        const SetResult r = node.setParam(id, value, 0, false, paramCtx_);
        if (r == SetResult::NoSuchParam) throw osc::ArgError(std::string(node.typeName()) + " has no parameter '" + name + "'");
        if (r == SetResult::BadValue) throw osc::ArgError("value " + formatNumber(value) + " is out of range for '" + name + "'");
    }
}

float Nodes::paramValue(osc::ArgReader& args, ParamId id, const std::string& name) {
    if (!args.isString()) return args.number("parameter value");
    const std::string word = args.string("parameter value");
    if (const auto v = paramEnumValue(id, word)) return *v;
    throw osc::ArgError("'" + word + "' is not a value of '" + name + "'" +
                        (id == ParamId::Mode ? " (lp, hp, bp)" : id == ParamId::LfoShape ? " (sine, triangle, square, saw)" : " (a number)"));
}

std::pair<AddAction, int32_t> Nodes::placement(osc::ArgReader& args) {
    // scsynth's optional `addAction targetID` pair (head of the root group when left out).
    const int32_t action = args.atEnd() ? 0 : args.int32("add action");
    const int32_t target = args.atEnd() ? 0 : args.int32("target id");
    if (action < 0 || action > 4) throw osc::ArgError("add action must be 0..4 (head, tail, before, after, replace), got " + std::to_string(action));
    return {static_cast<AddAction>(action), target};
}

void Nodes::hSNew(Msg& m) {
    const std::string type = m.args.string("node type");
    int32_t id = m.args.int32("node id");
    const auto [action, target] = placement(m.args);
    if (id < 0) id = nextAutoId_--; // server-chosen ids are negative, as scsynth's
    const NodeType* t = findNodeType(type);
    if (!t) throw osc::ArgError("unknown node type '" + type + "' (known: " + nodeTypeNames() + ")");
    const NodeSetup setup = nodeSetup();
    std::unique_ptr<Node> node = t->make(id, setup);
    applyParams(m, *node);
    node->prepare(setup); // a player's stretcher is built here, not on the audio thread
    Node& made = *node;
    if (!push(m, cmd::NewNode{node.release(), action, target})) return;
    nodeCreated(m, made); // every module hears of it (a looper joins the SooperLooper namespace)
}

void Nodes::hGNew(Msg& m) {
    do {
        int32_t id = m.args.int32("group id");
        const auto [action, target] = placement(m.args);
        if (id < 0) id = nextAutoId_--;
        const EngineConfig& c = engine_.config();
        push(m, cmd::NewNode{new Group(id, c.numOutputs, c.blockSize), action, target});
    } while (!m.args.atEnd());
}

void Nodes::hNSet(Msg& m) {
    const int32_t id = m.args.int32("node id");
    if (m.args.atEnd()) throw osc::ArgError("no parameters given");
    // Validate everything first: a bad pair fails the whole message.
    std::vector<ParamValue> params;
    std::string name;
    while (!m.args.atEnd()) {
        const ParamId p = paramArg(m.args, name);
        params.push_back({p, paramValue(m.args, p, name)});
    }
    pushInChunks<cmd::SetParams>(m, id, params);
}

void Nodes::hNRamp(Msg& m) {
    const int32_t id = m.args.int32("node id");
    std::string name;
    const ParamId p = paramArg(m.args, name);
    const float target = m.args.number("target value");
    const float seconds = m.args.number("seconds");
    m.args.expectEnd();
    if (!paramRampable(p)) throw osc::ArgError("'" + name + "' cannot be ramped (continuous parameters only: gain, pan, rate, low, mid, high, cutoffHz, q, lfoDepthOctaves, feedback, mix, gainDb, cueGain)");
    if (!(seconds >= 0.0f && seconds <= 3600.0f)) throw osc::ArgError("ramp time must be 0..3600 seconds, got " + formatNumber(seconds));
    push(m, cmd::Ramp{id, p, target, seconds});
}

void Nodes::hNFree(Msg& m) {
    do push(m, cmd::Free{m.args.int32("node id")});
    while (!m.args.atEnd());
}

void Nodes::hNRun(Msg& m) {
    do {
        const int32_t id = m.args.int32("node id");
        const int32_t flag = m.args.int32("run flag");
        push(m, cmd::Run{id, flag != 0});
    } while (!m.args.atEnd());
}

void Nodes::move(Msg& m, bool after) {
    do {
        const int32_t a = m.args.int32("node id");
        const int32_t b = m.args.int32("target id");
        push(m, cmd::Move{a, b, after});
    } while (!m.args.atEnd());
}

void Nodes::hNBefore(Msg& m) { move(m, false); }

void Nodes::hNAfter(Msg& m) { move(m, true); }

void Nodes::hNQuery(Msg& m) {
    do push(m, cmd::Query{m.args.int32("node id")});
    while (!m.args.atEnd());
}

void Nodes::hGFreeAll(Msg& m) {
    do push(m, cmd::FreeAll{m.args.int32("group id"), false});
    while (!m.args.atEnd());
}

void Nodes::hGDeepFree(Msg& m) {
    do push(m, cmd::FreeAll{m.args.int32("group id"), true});
    while (!m.args.atEnd());
}

void Nodes::queryTrees(Msg& m, bool dump) {
    // `groupID flag` pairs; each snapshot is filled by the audio thread (room reserved here) and
    // answered or printed by the control thread (Controller::pollReplies).
    do {
        const int32_t id = m.args.int32("group id");
        const int32_t flag = m.args.atEnd() ? 0 : m.args.int32("flag");
        auto* s = new TreeSnapshot;
        s->rootId = id;
        s->withControls = flag != 0;
        s->dump = dump;
        s->entries.reserve(static_cast<size_t>(engine_.config().maxNodes) + 1);
        push(m, cmd::QueryTree{s});
    } while (!m.args.atEnd());
}

void Nodes::hGQueryTree(Msg& m) { queryTrees(m, false); }
void Nodes::hGDumpTree(Msg& m) { queryTrees(m, true); }

void Nodes::hNTrace(Msg& m) {
    do push(m, cmd::Query{m.args.int32("node id"), true});
    while (!m.args.atEnd());
}

void Nodes::hSGet(Msg& m) {
    const int32_t id = m.args.int32("node id");
    if (m.args.atEnd()) throw osc::ArgError("no parameters named");
    std::vector<ParamId> params;
    std::string name;
    while (!m.args.atEnd()) params.push_back(paramArg(m.args, name));
    pushInChunks<cmd::GetParams>(m, id, params);
}

void Nodes::hNMap(Msg& m) {
    const int32_t id = m.args.int32("node id");
    if (m.args.atEnd()) throw osc::ArgError("no parameter and bus given");
    std::vector<cmd::MapParam> maps;
    std::string name;
    while (!m.args.atEnd()) {
        const ParamId p = paramArg(m.args, name);
        const int32_t bus = m.args.int32("control bus");
        if (bus >= engine_.config().numControlBuses)
            throw osc::ArgError("control bus " + std::to_string(bus) + " out of range (0.." + std::to_string(engine_.config().numControlBuses - 1) + ", -1 unmaps)");
        maps.push_back(cmd::MapParam{id, p, bus < 0 ? -1 : bus});
    }
    for (const auto& mp : maps)
        if (!push(m, mp)) return;
}

int32_t Nodes::busIndex(Msg& m, const char* what, int32_t count) {
    const int32_t b = m.args.int32(what);
    if (b < 0 || count < 0 || static_cast<int64_t>(b) + count > engine_.config().numControlBuses)
        throw osc::ArgError("control bus " + std::to_string(b) + (count > 1 ? " + " + std::to_string(count) : std::string()) +
                            " out of range (0.." + std::to_string(engine_.config().numControlBuses - 1) + ")");
    return b;
}

void Nodes::hCSet(Msg& m) {
    std::vector<std::pair<int32_t, float>> pairs;
    do {
        const int32_t b = busIndex(m, "control bus", 1);
        pairs.emplace_back(b, m.args.number("value"));
    } while (!m.args.atEnd());
    for (const auto& [b, v] : pairs) {
        cmd::SetBus s{};
        s.first = b;
        s.count = 1;
        s.values[0] = v;
        if (!push(m, s)) return;
    }
}

std::pair<int32_t, int32_t> Nodes::busRange(Msg& m, int32_t minCount) {
    const int32_t first = m.args.int32("first control bus");
    const int32_t count = m.args.int32("number of buses");
    if (count < minCount || first < 0 || static_cast<int64_t>(first) + count > engine_.config().numControlBuses)
        throw osc::ArgError("control buses " + std::to_string(first) + " + " + std::to_string(count) + " out of range (0.." +
                            std::to_string(engine_.config().numControlBuses - 1) + ")");
    return {first, count};
}

void Nodes::hCSetn(Msg& m) {
    std::vector<cmd::SetBus> sets;
    do {
        const auto [first, count] = busRange(m, 0);
        for (int32_t i = 0; i < count; i += kMaxParamsPerCommand) {
            cmd::SetBus s{};
            s.first = first + i;
            for (int32_t k = i; k < count && s.count < kMaxParamsPerCommand; ++k) s.values[s.count++] = m.args.number("value");
            sets.push_back(s);
        }
    } while (!m.args.atEnd());
    for (const auto& s : sets)
        if (!push(m, s)) return;
}

void Nodes::hCGet(Msg& m) {
    // Through the engine, so that a /c_set sent before it has been applied.
    std::vector<int32_t> buses;
    do buses.push_back(busIndex(m, "control bus", 1));
    while (!m.args.atEnd());
    for (int32_t b : buses)
        if (!push(m, cmd::GetBus{b, 1, false})) return;
}

void Nodes::hCGetn(Msg& m) {
    std::vector<cmd::GetBus> gets;
    do {
        const auto [first, count] = busRange(m, 1);
        for (int32_t i = 0; i < count; i += kMaxParamsPerCommand)
            gets.push_back(cmd::GetBus{first + i, std::min<int32_t>(kMaxParamsPerCommand, count - i), true});
    } while (!m.args.atEnd());
    for (const auto& g : gets)
        if (!push(m, g)) return;
}

} // namespace loopd
