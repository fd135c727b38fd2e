#pragma once
// Projects (SPEC 4.10): a directory a user can copy to another machine and open there.
//   /project_save dir   writes dir/project.json (the clock: tempo, meter, beat position, tempo
//                       source; the node tree below the root with every node's type, parameters
//                       and pause state; the buffers), dir/buffers/N.wav (every buffer's audio as
//                       the server holds it: 32-bit float at its rate) and dir/loops.json with
//                       dir/loops.json.loopN.wav (the SooperLooper loops: audio, controls, paused
//                       or muted); project.json last, when everything else is on disk;
//                       /done /project_save dir
//   /project_load dir   (and --project dir at start) checks the whole directory first (a
//                       partial project or one of a newer loopd answers /fail and changes
//                       nothing), then replaces the scene: the tree's own nodes and every buffer
//                       go, the loops are those of the project; the clock goes on from the beat it
//                       stood on; /done /project_load dir once everything is in the engine.
// What a project does not keep: where players and loops were in their material (they start
// from their start), a tempo ramp under way (its tempo then), effect tails, control bus maps,
// MIDI bindings. The Crowdstream decks come back through their own namespace: deck levels, EQ and
// master, and every stem on its deck (playing, or cued for /start_group) with its parameters.
//
// Threads: handlers and poll() on the control thread; file work on the worker.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/control/Module.h"

namespace loopd {
class Buffers;
class Crowdstream;
class SooperLooper;
class TempoCommands;

class ProjectModule final : public Module {
public:
    static constexpr int kVersion = 1;
    ProjectModule(Controller& c, Buffers& buffers, SooperLooper& sl, TempoCommands& tempo, Crowdstream& decks);
    bool takeSnapshot(std::unique_ptr<TreeSnapshot>& s) override;
    void poll() override;
    int pollWithinMs() const override { return job_ == Job::None ? -1 : 2; }

private:
    void hSave(Msg&); void hLoad(Msg&);
    void finishSave();
    void restoreDecks(); // loading: the Crowdstream decks and stems of `decks_`
    void restoreDecks(Msg& m);

    Buffers& buffers_;
    SooperLooper& sl_;
    TempoCommands& tempo_;
    Crowdstream& crowdstream_;
    nlohmann::json decks_; // loading: the project's "decks" (restored with the tree)
    enum class Job { None, Saving, Loading };
    Job job_ = Job::None;
    std::string dir_;
    uint16_t client_ = kNoClient;
    std::unique_ptr<TreeSnapshot> snapshot_;
    // The worker's part of the job: done, and what went wrong ("" nothing).
    std::shared_ptr<std::atomic<bool>> workerDone_;
    std::shared_ptr<std::string> workerError_;
    std::shared_ptr<std::vector<int32_t>> savedBuffersOut_; // saving: the buffers written
    bool loopsFlushed_ = false;  // saving: a worker job queued after the loops' file writes
    int64_t settleUntil_ = -1;   // loading: /done once the engine has rendered past this sample
    int64_t started_ = 0;
    std::vector<std::vector<char>> treePackets_; // loading: the tree's commands, run once the old one is gone        // the job's first sample (it fails after a minute)
};

} // namespace loopd
