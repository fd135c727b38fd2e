#pragma once
// Which paths file commands may read and write (--root). With no roots, every path is allowed.
#include <string>
#include <vector>

namespace loopd {

class PathPolicy {
public:
    // [control] Roots are resolved once (must exist).
    explicit PathPolicy(std::vector<std::string> roots = {});
    // [any] Returns "" when allowed, otherwise the reason. `forWriting`: the file may not exist
    // yet, its directory must.
    // `Directory`: the path names a directory (a project): to read, it must exist; to write, it
    // may not exist yet, its parent must.
    enum class Kind { File, Directory };
    std::string check(const std::string& path, bool forWriting, Kind kind = Kind::File) const;
    const std::vector<std::string>& roots() const noexcept { return roots_; }

private:
    std::vector<std::string> roots_;
};

} // namespace loopd
