#include "server/control/ScsynthCommands.h"

#include <cstring>

namespace loopd {
namespace {
// Indexed by command number, as scsynth 3.13 numbers them.
constexpr const char* kNames[] = {
    nullptr, "/notify", "/status", "/quit", "/cmd", "/d_recv", "/d_load", "/d_loadDir", "/d_freeAll", "/s_new",
    "/n_trace", "/n_free", "/n_run", "/n_cmd", "/n_map", "/n_set", "/n_setn", "/n_fill", "/n_before", "/n_after",
    "/u_cmd", "/g_new", "/g_head", "/g_tail", "/g_freeAll", "/c_set", "/c_setn", "/c_fill", "/b_alloc", "/b_allocRead",
    "/b_read", "/b_write", "/b_free", "/b_close", "/b_zero", "/b_set", "/b_setn", "/b_fill", "/b_gen", "/dumpOSC",
    "/c_get", "/c_getn", "/b_get", "/b_getn", "/s_get", "/s_getn", "/n_query", "/b_query", "/n_mapn", "/s_noid",
    "/g_deepFree", "/clearSched", "/sync", "/d_free", "/b_allocReadChannel", "/b_readChannel", "/g_dumpTree",
    "/g_queryTree", "/error", "/s_newargs", "/n_mapa", "/n_mapan", "/n_order", "/p_new", "/version",
    "/rtMemoryStatus", "/b_setSampleRate"};
static_assert(sizeof(kNames) / sizeof(kNames[0]) == 67, "scsynth has 67 command numbers");

constexpr const char* kAsync[] = {"/b_alloc", "/b_allocRead", "/b_read", "/b_write", "/b_free", "/b_close",
                                  "/b_zero", "/b_gen", "/b_allocReadChannel", "/b_readChannel"};
} // namespace

const char* scsynthCommandName(uint32_t n) noexcept {
    return n < sizeof(kNames) / sizeof(kNames[0]) ? kNames[n] : nullptr;
}

bool takesCompletionMessage(const char* address) noexcept {
    for (const char* a : kAsync)
        if (std::strcmp(a, address) == 0) return true;
    return false;
}

} // namespace loopd
