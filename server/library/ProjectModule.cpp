#include "server/library/ProjectModule.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "server/compat/crowdstream/Crowdstream.h"
#include "server/compat/sooperlooper/SooperLooper.h"
#include "server/control/Buffers.h"
#include "server/control/Controller.h"
#include "server/engine/BufferData.h"
#include "server/engine/Group.h"
#include "server/engine/Node.h"
#include "server/io/AudioFile.h"
#include "server/nodes/Registry.h"
#include "server/tempo/TempoCommands.h"

namespace loopd {
namespace fs = std::filesystem;
namespace {
constexpr const char* kSave = "/project_save";
constexpr const char* kLoad = "/project_load";
constexpr const char* kLoops = "loops.json";

std::string bufferFile(int32_t b) { return "buffers/" + std::to_string(b) + ".wav"; }

// A node's parameters that differ from what a new node of its type starts with (`fresh`).
nlohmann::json paramsOf(const TreeSnapshot::NodeState& n, const Node* fresh) {
    nlohmann::json p = nlohmann::json::object();
    for (int i = 0; i < static_cast<int>(ParamId::Count); ++i) {
        if (!(n.has & (uint64_t{1} << i))) continue;
        float d = 0.0f;
        if (fresh && fresh->getParam(static_cast<ParamId>(i), d) && d == n.values[i]) continue;
        p[paramName(static_cast<ParamId>(i))] = n.values[i];
    }
    return p;
}

void addParams(osc::MessageBuilder& m, const nlohmann::json& params) {
    for (const auto& [k, v] : params.items()) m.s(k).f(v.get<float>());
}

} // namespace

ProjectModule::ProjectModule(Controller& c, Buffers& buffers, SooperLooper& sl, TempoCommands& tempo, Crowdstream& decks)
    : Module(c), buffers_(buffers), sl_(sl), tempo_(tempo), crowdstream_(decks) {
    on(kSave, &ProjectModule::hSave);
    on(kLoad, &ProjectModule::hLoad);
}

void ProjectModule::hSave(Msg& m) {
    const std::string dir = checkedDirectory(m, m.args.string("project directory"), true);
    m.args.expectEnd();
    if (job_ != Job::None) throw osc::ArgError("a project save or load is under way (" + dir_ + ")");
    std::error_code ec;
    fs::create_directories(dir + "/buffers", ec);
    if (ec) throw osc::ArgError("cannot create " + dir + "/buffers: " + ec.message());
    // The tree and the clock, read by the audio thread in one block.
    auto snap = std::make_unique<TreeSnapshot>();
    snap->rootId = 0;
    snap->full = true;
    snap->entries.reserve(static_cast<size_t>(engine_.config().maxNodes) + 1);
    snap->nodes.reserve(static_cast<size_t>(engine_.config().maxNodes) + 1);
    if (!push(m, cmd::QueryTree{snap.get()})) return;
    snap.release(); // the engine hands it back (takeSnapshot)
    // The loops: SooperLooper's session (its audio is copied on the audio thread's terms).
    runInternal(osc::MessageBuilder("/save_session").s(dir + "/" + kLoops));
    // The buffers, as the worker sees them (after every load queued before this).
    auto done = std::make_shared<std::atomic<bool>>(false);
    auto error = std::make_shared<std::string>();
    auto written = std::make_shared<std::vector<int32_t>>();
    const std::vector<int32_t> known = buffers_.knownBuffers();
    worker_.post([this, dir, known, done, error, written] {
        for (int32_t b : known) {
            const BufferData* d = buffers_.workerBuffer(b);
            if (!d) continue; // still loading, or freed since
            try {
                writeAudioFile(dir + "/" + bufferFile(b), *d, 0, d->numFrames, "wav", "float");
                written->push_back(b);
            } catch (const std::exception& e) {
                *error = e.what();
            }
        }
        done->store(true);
    });
    job_ = Job::Saving;
    dir_ = dir;
    client_ = m.client;
    workerDone_ = done;
    workerError_ = error;
    savedBuffersOut_ = written;
    loopsFlushed_ = false;
    started_ = engine_.sampleTime();
}

bool ProjectModule::takeSnapshot(std::unique_ptr<TreeSnapshot>& s) {
    if (job_ != Job::Saving || snapshot_) return false;
    snapshot_ = std::move(s);
    return true;
}

void ProjectModule::poll() {
    if (job_ == Job::None) return;
    const int64_t now = engine_.sampleTime();
    if (now - started_ > static_cast<int64_t>(60.0 * engine_.config().sampleRate)) {
        fail(client_, job_ == Job::Saving ? kSave : kLoad, "the project " + dir_ + " did not finish within a minute");
        job_ = Job::None;
        snapshot_.reset();
        return;
    }
    if (job_ == Job::Saving) {
        if (!snapshot_ || !workerDone_->load() || sl_.savesPending()) return;
        if (!loopsFlushed_) {
            // The loops' files are written by worker jobs queued by now: one more job after them.
            loopsFlushed_ = true;
            auto done = std::make_shared<std::atomic<bool>>(false);
            workerDone_ = done;
            worker_.post([done] { done->store(true); });
            return;
        }
        finishSave();
        return;
    }
    // Loading: everything queued on the worker is done; the engine takes it, and the nodes freed
    // fade out (declick) within a few blocks; then the tree, then /done once that is in too.
    if (!workerDone_->load()) return;
    if (settleUntil_ < 0) settleUntil_ = now + 4 * engine_.config().blockSize + static_cast<int64_t>(engine_.config().declickSeconds * engine_.config().sampleRate);
    if (now < settleUntil_) return;
    if (!treePackets_.empty() || !decks_.empty()) {
        restoreDecks();
        for (const auto& p : treePackets_) controller_.runInternal(p);
        treePackets_.clear();
        settleUntil_ = now + 2 * engine_.config().blockSize;
        return;
    }
    job_ = Job::None;
    if (!workerError_->empty()) fail(client_, kLoad, "project " + dir_ + ": " + *workerError_);
    else send(client_, osc::MessageBuilder("/done").s(kLoad).s(dir_));
    spdlog::info("project loaded from {}", dir_);
}

void ProjectModule::finishSave() {
    job_ = Job::None;
    std::unique_ptr<TreeSnapshot> s = std::move(snapshot_);
    if (!s->found || s->truncated) { fail(client_, kSave, "the node tree could not be read whole"); return; }
    if (!workerError_->empty()) { fail(client_, kSave, "project " + dir_ + ": " + *workerError_); return; }
    nlohmann::json j;
    j["format"] = "loopd project";
    j["version"] = kVersion;
    j["sampleRate"] = engine_.config().sampleRate;
    j["clock"] = {{"bpm", s->bpm}, {"beatsPerBar", s->beatsPerBar}, {"beats", s->beats}, {"source", TempoCommands::name(tempo_.source())}};
    j["buffers"] = nlohmann::json::array();
    for (int32_t b : *savedBuffersOut_) j["buffers"].push_back({{"number", b}, {"file", bufferFile(b)}});
    j["loops"] = kLoops;
    // The tree below the root in pre-order, each node with its parent; what a namespace owns
    // (the looper's group and loops, the decks) is left to that namespace.
    nlohmann::json tree = nlohmann::json::array();
    nlohmann::json decks = nlohmann::json::object();
    struct Open { int32_t id; int32_t left; bool skipped; };
    std::vector<Open> open;
    // A new node of each type, for its defaults (only what differs is kept).
    std::map<std::string, std::unique_ptr<Node>> fresh;
    const Node* freshGroup = fresh.emplace("group", std::make_unique<Group>(-1, engine_.config().numOutputs, engine_.config().blockSize)).first->second.get();
    auto defaults = [&](const char* type) -> const Node* {
        auto it = fresh.find(type);
        if (it != fresh.end()) return it->second.get();
        std::unique_ptr<Node> n;
        try {
            if (const NodeType* t = findNodeType(type)) n = t->make(-1, nodeSetup());
        } catch (const std::exception&) {
        }
        return fresh.emplace(type, std::move(n)).first->second.get();
    };
    for (size_t i = 0; i < s->entries.size() && i < s->nodes.size(); ++i) {
        const TreeSnapshot::Entry& e = s->entries[i];
        const TreeSnapshot::NodeState& n = s->nodes[i];
        const int32_t parent = open.empty() ? -1 : open.back().id;
        const bool skipped = (!open.empty() && open.back().skipped) || n.owner != static_cast<uint8_t>(Node::Owner::Tree);
        if (!open.empty()) --open.back().left;
        if (e.id == 0) {
            j["root"] = paramsOf(n, freshGroup);
        } else if (n.owner == static_cast<uint8_t>(Node::Owner::Decks)) {
            // The Crowdstream decks: their groups and EQs by id, the stems by buffer.
            const auto value = [&](ParamId p, float d) { return n.has & (uint64_t{1} << static_cast<int>(p)) ? n.values[static_cast<int>(p)] : d; };
            if (e.numChildren < 0 && std::string(n.type) == "player") {
                decks["stems"].push_back({{"buffer", static_cast<int32_t>(value(ParamId::Buf, -1.0f))}, {"rate", value(ParamId::Rate, 1.0f)},
                                          {"gain", value(ParamId::Gain, 1.0f)}, {"loop", value(ParamId::Loop, 0.0f) != 0.0f},
                                          {"startFrac", std::max(0.0f, value(ParamId::StartFrac, 0.0f))}, {"held", n.held},
                                          {"paused", n.paused}, {"params", paramsOf(n, defaults("player"))}});
            } else {
                decks["nodes"].push_back({{"id", e.id}, {"params", paramsOf(n, e.numChildren >= 0 ? freshGroup : defaults(n.type))}});
            }
        } else if (!skipped) {
            tree.push_back({{"id", e.id}, {"type", e.numChildren >= 0 ? "group" : n.type}, {"parent", parent},
                            {"paused", n.paused}, {"params", paramsOf(n, e.numChildren >= 0 ? freshGroup : defaults(n.type))}});
        }
        if (e.numChildren > 0) open.push_back({e.id, e.numChildren, skipped});
        while (!open.empty() && open.back().left <= 0) open.pop_back();
    }
    j["tree"] = tree;
    if (!decks.empty()) j["decks"] = decks;
    const std::string tmp = dir_ + "/project.json.tmp";
    {
        std::ofstream out(tmp);
        out << j.dump(1) << "\n";
        if (!out) { fail(client_, kSave, "cannot write " + tmp); return; }
    }
    std::error_code ec;
    fs::rename(tmp, dir_ + "/project.json", ec);
    if (ec) { fail(client_, kSave, "cannot write " + dir_ + "/project.json: " + ec.message()); return; }
    spdlog::info("project saved to {}: {} nodes, {} buffers, clock {:.2f} BPM at beat {:.3f}", dir_, tree.size(),
                 savedBuffersOut_->size(), s->bpm, s->beats);
    send(client_, osc::MessageBuilder("/done").s(kSave).s(dir_));
}

void ProjectModule::restoreDecks() {
    if (decks_.empty()) return;
    withMsg(kLoad, client_, [this](Msg& m) { restoreDecks(m); });
    decks_ = nlohmann::json::object();
}

void ProjectModule::restoreDecks(Msg& m) {
    try {
        if (decks_.contains("nodes")) {
            float levels[4] = {1.0f, 1.0f, 1.0f, 1.0f};
            for (const auto& n : decks_["nodes"]) {
                const int32_t id = n["id"].get<int32_t>();
                if (id >= 901 && id <= 904 && n["params"].contains("gain")) levels[id - 901] = n["params"]["gain"].get<float>();
            }
            crowdstream_.restoreDeckLevels(m, levels); // makes the decks
            for (const auto& n : decks_["nodes"]) {
                if (n["params"].empty()) continue;
                osc::MessageBuilder set("/n_set");
                set.i(n["id"].get<int32_t>());
                addParams(set, n["params"]);
                runInternal(set);
            }
        }
        for (const auto& st : decks_.value("stems", nlohmann::json::array())) {
            const int32_t id = crowdstream_.restoreStem(m, st["buffer"].get<int32_t>(), st["rate"].get<float>(), st["gain"].get<float>(),
                                                        st["loop"].get<bool>(), st["startFrac"].get<float>(), st["held"].get<bool>());
            if (id < 0) continue;
            // What /play_stem does not set (set at creation: the buffer, rate, gain, loop, start, hold, stretch, follow).
            osc::MessageBuilder set("/n_set");
            set.i(id);
            int count = 0;
            for (const auto& [k, v] : st["params"].items()) {
                if (k == "buf" || k == "rate" || k == "gain" || k == "loop" || k == "startFrac" || k == "hold" || k == "stretch" || k == "follow") continue;
                set.s(k).f(v.get<float>());
                ++count;
            }
            if (count > 0) runInternal(set);
            if (st.value("paused", false)) runInternal(osc::MessageBuilder("/n_run").i(id).i(0));
        }
    } catch (const std::exception& e) {
        spdlog::warn("project {}: the decks: {}", dir_, e.what());
    }
}

void ProjectModule::hLoad(Msg& m) {
    const std::string dir = checkedDirectory(m, m.args.string("project directory"), false);
    m.args.expectEnd();
    if (job_ != Job::None) throw osc::ArgError("a project save or load is under way (" + dir_ + ")");
    // Everything is checked before anything changes.
    nlohmann::json j;
    {
        std::ifstream in(dir + "/project.json");
        if (!in) throw osc::ArgError(dir + " is not a loopd project (no project.json)");
        try {
            j = nlohmann::json::parse(in);
        } catch (const std::exception& e) {
            throw osc::ArgError(dir + "/project.json is damaged: " + e.what());
        }
    }
    std::vector<std::string> missing;
    nlohmann::json loops;
    try {
        if (j.value("format", "") != "loopd project") throw osc::ArgError(dir + "/project.json is not a loopd project");
        const int version = j.at("version").get<int>();
        if (version > kVersion)
            throw osc::ArgError(dir + " was saved by a newer loopd (project version " + std::to_string(version) + "; this one reads up to " +
                                std::to_string(kVersion) + ")");
        for (const auto& b : j.at("buffers")) {
            const int32_t n = b.at("number").get<int32_t>();
            if (n < 0 || n >= engine_.config().maxBuffers) throw osc::ArgError("buffer number " + std::to_string(n) + " out of range");
            if (!fs::exists(dir + "/" + b.at("file").get<std::string>())) missing.push_back(b.at("file").get<std::string>());
        }
        for (const auto& n : j.at("tree")) {
            const std::string type = n.at("type").get<std::string>();
            if (type != "group" && !findNodeType(type)) throw osc::ArgError("a node of unknown type '" + type + "'");
            for (const auto& [k, v] : n.at("params").items()) {
                if (!paramFromName(k)) throw osc::ArgError("node " + std::to_string(n.at("id").get<int32_t>()) + ": unknown parameter '" + k + "'");
                (void)v.get<float>();
            }
        }
        const std::string loopsFile = dir + "/" + j.value("loops", kLoops);
        if (!fs::exists(loopsFile)) {
            missing.push_back(j.value("loops", kLoops));
        } else {
            std::ifstream in(loopsFile);
            loops = nlohmann::json::parse(in);
            for (const auto& l : loops.at("loops"))
                if (l.contains("audio") && !fs::exists(dir + "/" + l["audio"].get<std::string>())) missing.push_back(l["audio"].get<std::string>());
        }
        (void)j.at("clock").at("bpm").get<double>();
    } catch (const osc::ArgError&) {
        throw;
    } catch (const std::exception& e) {
        throw osc::ArgError(dir + "/project.json is damaged: " + e.what());
    }
    if (!missing.empty()) {
        std::string list;
        for (const auto& f : missing) list += (list.empty() ? "" : ", ") + f;
        throw osc::ArgError("the project " + dir + " is partial (missing " + list + "): nothing was loaded");
    }

    // Replace the scene: the tree's own nodes and every buffer go (what a namespace owns stays
    // until its own part of the project replaces it: the loops).
    runInternal(osc::MessageBuilder("/g_freeAll").i(0));
    runInternal(osc::MessageBuilder("/mixer_cleanup")); // the Crowdstream stems (their namespace's own)
    freeBuffers(kNoClient, kLoad, [](int32_t) { return true; });
    decks_ = j.value("decks", nlohmann::json::object());
    // The clock goes on from the beat it stood on.
    const auto& c = j["clock"];
    const std::string source = c.value("source", "manual");
    if (source != TempoCommands::name(tempo_.source())) runInternal(osc::MessageBuilder("/tempo_source").s(source));
    Msg now{kLoad, m.args, 0, m.client};
    push(now, cmd::Tempo{c.at("bpm").get<double>(), 0.0, 0.0, 0});
    push(now, cmd::Meter{c.value("beatsPerBar", 4)});
    push(now, cmd::ClockSet{c.value("beats", 0.0)});
    // The buffers, on the worker after the frees.
    auto done = std::make_shared<std::atomic<bool>>(false);
    auto error = std::make_shared<std::string>();
    std::vector<std::pair<int32_t, std::string>> files;
    for (const auto& b : j["buffers"]) files.emplace_back(b["number"].get<int32_t>(), dir + "/" + b["file"].get<std::string>());
    const LoadOptions lo = loadOptions("a project's buffer");
    worker_.post([this, files, lo, error] {
        for (const auto& [n, path] : files) {
            try {
                swapBuffer(kNoClient, kLoad, n, loadAudioFile(path, lo));
            } catch (const std::exception& e) {
                *error = e.what();
            }
        }
    });
    // The loops.
    runInternal(osc::MessageBuilder("/load_session").s(dir + "/" + j.value("loops", kLoops)));
    // The tree, parents before children, with every parameter as saved: once the old nodes have
    // faded out (their ids are free again) and the buffers are in (players start at once).
    treePackets_.clear();
    for (const auto& n : j["tree"]) {
        const int32_t id = n["id"].get<int32_t>();
        const int32_t parent = std::max(0, n.value("parent", 0));
        if (n["type"] == "group") {
            treePackets_.push_back(osc::MessageBuilder("/g_new").i(id).i(1).i(parent).bytes());
            if (!n["params"].empty()) {
                osc::MessageBuilder set("/n_set");
                set.i(id);
                addParams(set, n["params"]);
                treePackets_.push_back(set.bytes());
            }
        } else {
            osc::MessageBuilder make("/s_new");
            make.s(n["type"].get<std::string>()).i(id).i(1).i(parent);
            addParams(make, n["params"]);
            treePackets_.push_back(make.bytes());
        }
        if (n.value("paused", false)) treePackets_.push_back(osc::MessageBuilder("/n_run").i(id).i(0).bytes());
    }
    if (j.contains("root") && !j["root"].empty()) {
        osc::MessageBuilder set("/n_set");
        set.i(0);
        addParams(set, j["root"]);
        treePackets_.push_back(set.bytes());
    }
    // Last on the worker: everything before it (buffers, loops) is queued for the engine.
    worker_.post([done] { done->store(true); });
    job_ = Job::Loading;
    dir_ = dir;
    client_ = m.client;
    workerDone_ = done;
    workerError_ = error;
    settleUntil_ = -1;
    started_ = engine_.sampleTime();
}

} // namespace loopd
