#pragma once
// The SooperLooper compatibility module (docs/OSC.md "SooperLooper"): SooperLooper's OSC
// namespace — /ping, /loop_add, /loop_del, /set, /get, /register*, /sl/#/..., sessions — over
// `looper` nodes in group 800. It owns the loop table (index → node, the controls clients set,
// registrations for updates, saves in flight) and answers at the return URLs clients name.
//
// Threads: handlers and hooks on the control thread; file writes of saved loops on the worker.
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/control/Module.h"
#include "server/midi/Bindings.h"
#include "server/midi/MidiParser.h"
#include "server/engine/MemoryBudget.h"

namespace loopd {

class TempoCommands;

class Looper;
enum class LoopCmd : uint8_t;

class SooperLooper final : public Module {
public:
    SooperLooper(Controller& c, TempoCommands& tempo); // registers the addresses
    void onBeat(const reply::Beat& b) override;             // tap_tempo to registered clients
    void onNodeEnded(int32_t id) override;                  // group 800 freed
    void onNodeCreated(Msg& m, Node& node) override;        // a looper joins as the next loop
    void onNodeDisposed(const Node& gone) override;         // a looper leaves the loop table
    bool takeBack(Released& x) override;                    // loop copies (loaded, saved)
    void poll() override;                                   // state changes, auto-updates
    int pollWithinMs() const override;                      // 5 ms while a loop is active; the next auto-update
    // [control] A channel message from a MIDI input (midi::MidiModule): a learn or a
    // /get_next_midi_event under way takes it, else it goes through the bindings, as
    // SooperLooper's /sl/<instance>/<down|up|upforce|hit|set> commands.
    // True when a learn took it (nothing else should act on it). `padsDone`: the audio thread
    // already acted on the event's pad bindings (midi/MidiPads.h): only the others run here.
    bool onMidi(const midi::Message& m, bool padsDone = false);
    // [control] The jam's loops (net/JamModule): a new loop like /loop_add (its index; -1 when
    // the engine refused it: `m`'s client has the /fail), and a loop's looper by node id (null
    // once it is gone: /loop_del, or never made).
    int addLoopFor(Msg& m, int channels, double seconds) { return addLoop(m, channels, seconds); }
    Looper* looperOfNode(int32_t node) const;
    int32_t nodeOfIndex(int index) const { return index >= 0 && index < static_cast<int>(slLoops_.size()) ? slLoops_[static_cast<size_t>(index)].node : -1; }
    int indexOfNode(int32_t node) const;
    // [control] Loop copies of /sl/#/save_loop or /save_session not written yet.
    bool savesPending() const { return !slSaves_.empty(); }

private:
    TempoCommands& tempo_; // the clock's commands (tempo, tap tempo follow the tempo source)
    struct SlLoop {
        int32_t node = -1;
        Looper* looper = nullptr;           // owned by the engine; valid until onNodeDisposed
        int channels = 2;
        double memorySeconds = 0.0;
        std::map<std::string, float> controls; // as clients set them
        bool soloed = false;
        int lastState = -99;
        double downAt[32] = {}; // control_clock::steadySeconds() of the last down
        bool held[32] = {};
        bool shifter = false;          // a pitch shifter was sent to it
        MemoryLease shifterMemory;
    };
    struct SlRegistration {
        int loop; std::string ctrl, url, path; bool autoUpdate; float last; uint16_t client;
    };
    struct SlSave { std::string path, sample, url, errPath; uint16_t client; int index; const BufferData* data = nullptr; };

    void hSl(Msg&);
    void hSlPing(Msg&);
    // SooperLooper's MIDI binding commands (SooperLooperMidi.cpp); the table is read by the MIDI
    // input to come (issue 15).
    void hSlMidiBindings(Msg&); void hSlAddMidiBinding(Msg&); void hSlRemoveMidiBinding(Msg&); void hSlClearMidiBindings(Msg&);
    void hSlLoadMidiBindings(Msg&); void hSlSaveMidiBindings(Msg&);
    midi::Binding slBindingArg(Msg& m); // a binding argument, checked
    // What is wrong with a binding's command and target ("" when nothing).
    static std::string bindingTargetProblem(const midi::Binding& b);
    // SooperLooper's learn protocol: /learn_midi_binding binding options url path (the next
    // cc/note/program change completes the binding: `add` binding, then `done` binding, to
    // url path), /get_next_midi_event url path (`recv` binding), /cancel_midi_learn and
    // /cancel_get_next_midi url path (`learn_cancel` / `next_cancel`).
    void hSlLearnMidiBinding(Msg&); void hSlGetNextMidiEvent(Msg&); void hSlCancelMidiLearn(Msg&); void hSlCancelGetNextMidi(Msg&);
    struct MidiLearn {
        bool active = false;
        midi::Binding binding;
        bool exclusive = false;
        std::string url, path;
        uint16_t client = 0;
    };
    MidiLearn learn_, getNext_;
    std::map<std::string, float> toggles_; // a toggle binding's last value, by its line
    // LED feedback: every note/cc binding of a loop command lights while the loop is in that
    // command's state (127; 64 while waiting to start or stop recording; 0 otherwise), sent on
    // the MIDI output when it changes (feedbackSent_: by binding line and loop).
    void sendFeedback();
    // The pad bindings (loop commands of a loop or of all loops) compiled for the audio thread
    // whenever the bindings or the loops change (padsKey_: what they were compiled from).
    void compilePads();
    static bool isSustainable(LoopCmd c); // SooperLooper's SUS commands (a long press releases)
    std::vector<int32_t> padsKey_;
    std::map<std::pair<std::string, int>, int> feedbackSent_;
    uint64_t bindingsVersion_ = 0, feedbackVersion_ = ~uint64_t{0}; // [bindingsMutex_] / [control]
    std::mutex bindingsMutex_;
    midi::BindingTable bindings_; // [bindingsMutex_]: the control thread and the worker's loads and saves
 void hSlLoopAdd(Msg&); void hSlLoopDel(Msg&); void hSlGlobalSet(Msg&); void hSlGlobalGet(Msg&);
    void hSlRegister(Msg&); void hSlUnregister(Msg&); void hSlRegisterUpdate(Msg&);
    void hSlSaveSession(Msg&); void hSlLoadSession(Msg&);
    void slCommand(Msg& m, int index, const std::string& verb);
    void slSolo(Msg& m, int index);
    void slSet(Msg& m, int index);
    void slGet(Msg& m, int index);
    void slGlobalSet(Msg& m, const std::string& name, float value);
    void slGlobalGet(Msg& m, const std::string& name, const std::string& url, const std::string& path);
    float slGlobalValue(const std::string& name);
    float slValue(const SlLoop& loop, const std::string& name) const;
    float slDefault(const std::string& name) const;
    void slRegister(Msg& m, int index, const std::string& verb);
    void slNotifyChange(int index, const std::string& name, float value);
    void slSaveLoop(Msg& m, int index);
    void slLoadLoop(Msg& m, int index);
    void slLoopBuffer(BufferData* data, int32_t nodeId, bool saved);
    void slError(Msg& m, const std::string& url, const std::string& path, const std::string& reason);
    std::vector<int> slTargets(Msg& m, int index);
    void ensureLooperGroup(Msg& m);
    int addLoop(Msg& m, int channels, double seconds);
    void pushLoopGlobals(Msg& m);
    void sendConfigUpdates();
    void attachShifter(Msg& m, SlLoop& loop);
    osc::MessageBuilder slPingReply(const std::string& path, bool withId) const;
    std::optional<osc::Endpoint> endpointForUrl(const std::string& url);
    // [control] To a client's return URL (none usable: to the client itself).
    void sendToUrl(uint16_t client, const std::string& url, const osc::MessageBuilder& m);
    // [any] To a return address resolved on the control thread (none: to the client itself).
    void replyTo(uint16_t client, const std::optional<osc::Endpoint>& to, const osc::MessageBuilder& m);

    std::vector<SlLoop> slLoops_;
    bool looperGroupCreated_ = false;
    int32_t nextLoopNode_ = 801;
    int slSelected_ = 0;
    int slSyncSource_ = 1;                           // loop 1 (index 0) is the anchor
    double slEighthPerCycle_ = 16.0;
    double slLenience_ = 0.1;
    bool slPaMute_ = false;
    bool slMidiClockOut_ = false;                    // output_midi_clock (--midi-clock-out at start)
    std::map<std::string, float> slGlobals_;
    std::vector<std::pair<std::string, std::string>> slConfigListeners_;
    std::vector<SlRegistration> slRegistrations_;
    std::map<int32_t, SlSave> slSaves_;              // node → save in flight
    std::unordered_map<std::string, osc::Endpoint> urlCache_; // control thread only
    std::chrono::steady_clock::time_point slLastAuto_;
    int32_t slEngineId_ = 0;                         // random, non-zero: slgui notices a restart by it
};

} // namespace loopd
