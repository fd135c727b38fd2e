#pragma once
// The node module: scsynth's node and group commands (/s_new with the registry's node types,
// /g_new, /n_set, /n_ramp, /n_free, /n_run, /n_before, /n_after, /n_query, /g_freeAll,
// /g_deepFree, /g_queryTree, /g_dumpTree, /n_trace, /s_get, /n_map) and the control buses
// (/c_set, /c_setn, /c_get, /c_getn). Every argument is checked before anything is queued; nodes
// are built and prepared here (allocation happens on this thread, never on the audio thread),
// and every module hears of a node a client made (Module::onNodeCreated).
//
// Threads: control thread only.
#include <string>
#include <utility>
#include <vector>

#include "server/control/Module.h"

namespace loopd {

class Nodes final : public Module {
public:
    explicit Nodes(Controller& c); // registers the addresses

    // Parameter pairs `name value ...` set on a node before it is queued (ArgError on the first
    // bad one).
    void applyParams(Msg& m, Node& node);
    // The next argument as a parameter name (ArgError for an unknown one); `name`: its spelling.
    static ParamId paramArg(osc::ArgReader& args, std::string& name);
    // A parameter value: a number, or a named value (`mode lp`, `lfoShape saw`).
    static float paramValue(osc::ArgReader& args, ParamId id, const std::string& name);
    static std::pair<AddAction, int32_t> placement(osc::ArgReader& args); // addAction targetID

private:
    void hSNew(Msg&); void hGNew(Msg&); void hNSet(Msg&); void hNRamp(Msg&);
    void hNFree(Msg&); void hNRun(Msg&); void hNBefore(Msg&); void hNAfter(Msg&); void hNQuery(Msg&);
    void hGFreeAll(Msg&); void hGDeepFree(Msg&); void hGQueryTree(Msg&);
    void hGDumpTree(Msg&); void hNTrace(Msg&); void hSGet(Msg&); void hNMap(Msg&);
    void hCSet(Msg&); void hCSetn(Msg&); void hCGet(Msg&); void hCGetn(Msg&);
    void move(Msg&, bool after);
    void queryTrees(Msg& m, bool dump); // /g_queryTree and /g_dumpTree
    int32_t busIndex(Msg& m, const char* what, int32_t count);
    // `first count` of control buses, inside the bus table, count at least minCount.
    std::pair<int32_t, int32_t> busRange(Msg& m, int32_t minCount);
    // Items for node `id` in commands of at most kMaxParamsPerCommand (SetParams, GetParams).
    template <class C, class T>
    bool pushInChunks(Msg& m, int32_t id, const std::vector<T>& items) {
        for (size_t i = 0; i < items.size(); i += kMaxParamsPerCommand) {
            C c{};
            c.id = id;
            for (size_t k = i; k < items.size() && c.count < kMaxParamsPerCommand; ++k) c.params[c.count++] = items[k];
            if (!push(m, c)) return false;
        }
        return true;
    }

    int32_t nextAutoId_ = -1000; // server-chosen node ids (negative, as scsynth's)
};

} // namespace loopd
