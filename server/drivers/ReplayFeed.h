#pragma once
// What a replay (--replay) hands the engine before each block: the actions of the session log
// (packets, completion messages, closed TCP clients) at the sample the live control thread ran
// them, and the live block's mark: how many commands the engine may take from each queue and the
// clock (NTP of the block's first sample) it maps timetags against. With those, every command
// takes effect on the sample it took effect on live, whatever the order and speed the replay's
// control side produces them in (its worker runs synchronously: never later than live).
//
// At another sample rate (--sample-rate) every position is scaled and a mark applies to the block
// its scaled sample falls in: the same performance, within one block of the live timing.
//
// After each block at the live rate it compares the engine's totals and command hash with the
// mark's: the first block that differs is reported (a source the log does not keep: MIDI input,
// Link, the jam, the generator; or marks lost).
//
// Threads: the replay's one thread.
#include <cstdint>
#include <functional>
#include <string>

#include "server/io/SessionLog.h"

namespace loopd {

class Engine;

class ReplayFeed {
public:
    ReplayFeed(const SessionRecording& recording, double sampleRate, int blockSize);

    // The frames to render (replay samples): to the clean stop, or for a cut log to its last
    // record, capped by the input kept (`inputFrames`, replay samples; -1: none kept).
    int64_t endFrames(int64_t inputFrames) const;
    // [replay] Before the block at `pos`: run the actions due (`act`), set the engine's limits
    // and clock. True while actions remain.
    bool before(Engine& engine, int64_t pos, const std::function<void(const SessionAction&)>& act);
    // [replay] After that block: compare with the live block (same rate only).
    void after(const Engine& engine, int64_t pos);

    int64_t divergedAt() const noexcept { return divergedAt_; }  // replay sample, -1: never
    const std::string& divergence() const noexcept { return divergence_; }
    size_t actionsRun() const noexcept { return nextAction_; }
    size_t marksChecked() const noexcept { return checked_; }

private:
    int64_t scaled(int64_t liveSample) const noexcept;
    const SessionRecording& rec_;
    const double rate_, scale_;
    const int block_;
    size_t nextAction_ = 0, nextMark_ = 0;
    uint64_t control_ = 0, worker_ = 0;
    const SessionMarkRecord* due_ = nullptr;  // the mark of the block being rendered (same rate)
    const SessionMarkRecord* last_ = nullptr; // the last mark applied (the clock runs on from it)
    int64_t divergedAt_ = -1;
    std::string divergence_;
    size_t checked_ = 0;
};

} // namespace loopd
