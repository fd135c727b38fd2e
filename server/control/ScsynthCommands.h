#pragma once
// scsynth's integer command numbers (its "Command Numbers" table, SC_Lib_Cintf.h): sclang sends
// most commands as an int32 address instead of a string, so loopd maps them back to names. And
// which commands are asynchronous: they take a completion message (an OSC packet in a trailing
// blob) that runs when they have finished, before their /done.
//
// Threads: [any] (constant tables).
#include <cstdint>

namespace loopd {

// The address for command number `n` ("/s_new" for 9), or null for a number scsynth does not use.
const char* scsynthCommandName(uint32_t n) noexcept;

// Whether `address` is an asynchronous buffer command that may carry a completion message.
bool takesCompletionMessage(const char* address) noexcept;

} // namespace loopd
