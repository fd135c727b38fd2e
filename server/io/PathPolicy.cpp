#include "server/io/PathPolicy.h"

#include <filesystem>
#include <stdexcept>

namespace loopd {
namespace fs = std::filesystem;

PathPolicy::PathPolicy(std::vector<std::string> roots) {
    for (const auto& r : roots) {
        std::error_code ec;
        const fs::path p = fs::weakly_canonical(fs::absolute(r), ec);
        if (ec || !fs::is_directory(p)) throw std::runtime_error("--root is not a directory: " + r);
        roots_.push_back(p.string());
    }
}

std::string PathPolicy::check(const std::string& path, bool forWriting, Kind kind) const {
    if (path.empty()) return "empty path";
    if (path.find('\0') != std::string::npos) return "path contains a NUL byte";
    std::error_code ec;
    fs::path p = fs::absolute(path, ec);
    if (ec) return "bad path: " + path;
    // Resolve symlinks of what exists, so that a link cannot lead outside a root.
    const fs::path resolved = fs::weakly_canonical(p, ec);
    if (ec) return "bad path: " + path;
    if (!roots_.empty()) {
        bool inside = false;
        for (const auto& r : roots_) {
            const auto rel = resolved.lexically_relative(r);
            if (!rel.empty() && *rel.begin() != "..") { inside = true; break; }
        }
        if (!inside) return "path outside the allowed roots: " + path;
    }
    if (kind == Kind::Directory) {
        if (fs::exists(resolved, ec) && !fs::is_directory(resolved, ec)) return "not a directory: " + path;
        if (forWriting && !fs::is_directory(resolved.parent_path(), ec)) return "directory does not exist: " + resolved.parent_path().string();
        if (!forWriting && !fs::is_directory(resolved, ec)) return "directory not found: " + path;
    } else if (forWriting) {
        if (!fs::is_directory(resolved.parent_path(), ec)) return "directory does not exist: " + resolved.parent_path().string();
        if (fs::is_directory(resolved, ec)) return "path is a directory: " + path;
    } else {
        if (!fs::exists(resolved, ec)) return "file not found: " + path;
        if (fs::is_directory(resolved, ec)) return "path is a directory, not a file: " + path;
    }
    return "";
}

} // namespace loopd
