#pragma once
// The Crowdstream compatibility module (docs/OSC.md "Crowdstream"): the addresses of the Python
// server loopd replaces — stems in buffers 100-4099, decks A-D as groups 901-904 under a stem
// master group 900, each with an eq3 node at its tail, timed starts, fades and a test tone.
// It owns the deck state (which stem plays where, which deck is cued, the deck levels).
//
// Threads: handlers and hooks on the control thread; the test tone is built on the worker.
#include <cstdint>
#include <unordered_map>

#include "server/control/Module.h"

namespace loopd {

class Crowdstream final : public Module {
public:
    explicit Crowdstream(Controller& c); // registers the addresses
    void onNodeEnded(int32_t id) override;
    // [control] A project loaded (library/ProjectModule): the deck levels, and a stem on the deck
    // of its buffer (held: cued for /start_group); the stem's node id (-1: not queued).
    void restoreDeckLevels(Msg& m, const float levels[4]);
    int32_t restoreStem(Msg& m, int32_t buffer, float rate, float volume, bool loop, float startFrac, bool held);

private:
    void hLoadBuffer(Msg&); void hPlayStem(Msg&); void hStopStem(Msg&); void hStemVolume(Msg&);
    void hCrossfadeLevels(Msg&); void hDeckLevels(Msg&); void hDeckFilter(Msg&); void hDeckEq(Msg&);
    void hDeckEqAll(Msg&); void hReset(Msg&); void hPlay(Msg&); void hCue(Msg&); void hCueSection(Msg&); void hStartGroup(Msg&);
    void hFade(Msg&); void hScheduleCAt(Msg&); void hGetStatus(Msg&); void hTestTone(Msg&); void hMixerCleanup(Msg&);
    int deckIndex(osc::ArgReader& args);             // A..D → 0..3, or ArgError
    void ensureDecks(Msg& m);
    uint64_t baseTag(const Msg& m) const;            // the message's time, or now
    static uint64_t addSeconds(uint64_t tag, double seconds);
    // materialBpm > 0: the stem's own tempo (a follower plays at rate 1 when the clock has it);
    // 0: the server's --bpm, as the original assumed of every stem.
    void startStem(Msg& m, int32_t bufnum, float rate, float volume, bool loop, float startFrac, uint64_t at, bool hold,
                   float materialBpm = 0.0f);
    void setDeckGain(Msg& m, int deck, float gain);
    void setEqBand(Msg& m, int deck, int band, float gain);
    static float cutOnlyGain(float percent);

    bool decksCreated_ = false;
    float deckLevels_[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    std::unordered_map<int32_t, int32_t> stemNodes_; // buffer id → playing node id
    int32_t armed_[4] = {-1, -1, -1, -1};            // cued node per deck
    int32_t nextStemNode_ = 2000000;
    uint64_t t0Tag_ = 0;                             // /reset time (for /schedule_c_at)
};

} // namespace loopd
