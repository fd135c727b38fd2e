#pragma once
namespace loopd {
constexpr int kVersionMajor = 0;
constexpr int kVersionMinor = 1;
constexpr int kVersionPatch = 0;
extern const char* const kGitCommit;
} // namespace loopd
