#include "server/drivers/ReplayFeed.h"

#include <algorithm>
#include <cmath>

#include "server/engine/Engine.h"

namespace loopd {
namespace {
constexpr double kTwo32 = 4294967296.0;
}

ReplayFeed::ReplayFeed(const SessionRecording& recording, double sampleRate, int blockSize)
    : rec_(recording), rate_(sampleRate), scale_(sampleRate / recording.header.sampleRate), block_(blockSize) {}

int64_t ReplayFeed::scaled(int64_t liveSample) const noexcept {
    return scale_ == 1.0 ? liveSample : static_cast<int64_t>(std::llround(static_cast<double>(liveSample) * scale_));
}

int64_t ReplayFeed::endFrames(int64_t inputFrames) const {
    int64_t end = 0;
    if (rec_.closed) {
        end = scaled(rec_.endSample);
    } else {
        // Cut off: what the log knows happened, and the input kept up to the crash.
        if (!rec_.marks.empty()) end = std::max(end, scaled(rec_.marks.back().sample) + block_);
        if (!rec_.actions.empty()) end = std::max(end, scaled(rec_.actions.back().sample) + block_);
        if (inputFrames >= 0) end = std::max(end, inputFrames);
    }
    return end;
}

bool ReplayFeed::before(Engine& engine, int64_t pos, const std::function<void(const SessionAction&)>& act) {
    const int64_t blockEnd = pos + block_;
    while (nextAction_ < rec_.actions.size() && scaled(rec_.actions[nextAction_].sample) < blockEnd)
        act(rec_.actions[nextAction_++]);
    due_ = nullptr;
    while (nextMark_ < rec_.marks.size() && scaled(rec_.marks[nextMark_].sample) < blockEnd) {
        const SessionMarkRecord& m = rec_.marks[nextMark_++];
        control_ = m.control;
        worker_ = m.worker;
        last_ = &m;
        if (scale_ == 1.0 && m.sample == pos) due_ = &m;
    }
    // The live clock at this block: the last mark's, run on at the nominal rate (only a block
    // that takes commands maps timetags, and every such block has its own mark).
    double ntp = 0.0;
    if (last_) ntp = last_->blockNtp + (static_cast<double>(pos) / rate_ - static_cast<double>(last_->sample) / rec_.header.sampleRate) * kTwo32;
    engine.setReplayBlock(control_, worker_, ntp);
    return nextAction_ < rec_.actions.size();
}

void ReplayFeed::after(const Engine& engine, int64_t pos) {
    if (scale_ != 1.0 || divergedAt_ >= 0) return;
    const Engine::SessionMark t = engine.sessionTotals();
    if (due_) {
        ++checked_;
        if (t.control == due_->control && t.worker == due_->worker && t.hash == due_->hash) return;
        divergedAt_ = pos;
        divergence_ = "live, the block at sample " + std::to_string(pos) + " had taken " + std::to_string(due_->control) + " + " +
                      std::to_string(due_->worker) + " commands (control + worker), the replay " + std::to_string(t.control) + " + " +
                      std::to_string(t.worker) + (t.control == due_->control && t.worker == due_->worker ? ", not the same ones" : "");
    } else if (t.control != control_ || t.worker != worker_) {
        divergedAt_ = pos;
        divergence_ = "at sample " + std::to_string(pos) + " the replay has taken " + std::to_string(t.control) + " + " + std::to_string(t.worker) +
                      " commands (control + worker), live " + std::to_string(control_) + " + " + std::to_string(worker_);
    }
}

} // namespace loopd
