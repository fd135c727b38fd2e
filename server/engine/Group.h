#pragma once
// A group is a mixer bus: its children render into the group's own bus in order (sources add,
// effects work in place), then the group's fader (gain, pan as balance, mute, solo, and the
// start/stop envelope) is applied and the result is added into the parent's bus.
#include <memory>

#include "server/engine/Node.h"

namespace loopd {

class Group final : public Node {
public:
    // [control] Allocates the bus.
    Group(int32_t id, int numChannels, int blockSize);

    SetResult setParam(ParamId id, float value, int64_t rampSamples, bool explicitRamp,
                       const ProcessContext& ctx) noexcept override;
    bool getParam(ParamId id, float& value) const noexcept override;
    void onInserted(ProcessContext& ctx, int64_t now) noexcept override;

    // [audio] Renders the children into the own bus and mixes the faded result into `parentBus`.
    void render(ProcessContext& ctx, Bus& parentBus, int offset, int numFrames) noexcept override;
    // [audio] Renders the children and applies the fader in place; the result stays in bus().
    void renderOwnBus(ProcessContext& ctx, int offset, int numFrames) noexcept;
    Bus& bus() noexcept { return bus_; }

    // Children, owned by the audio thread after insertion.
    Node* head = nullptr;
    Node* tail = nullptr;
    int depth = 0;

    // [audio] Tree edits.
    void addToHead(Node* n) noexcept;
    void addToTail(Node* n) noexcept;
    static void insertBefore(Node* n, Node* before) noexcept;
    static void insertAfter(Node* n, Node* after) noexcept;
    static void unlink(Node* n) noexcept;
    int numChildren() const noexcept;

private:
    std::unique_ptr<float[]> storage_;
    Bus bus_;
    dsp::LinearRamp gain_;
    dsp::LinearRamp pan_;
    dsp::LinearRamp mute_; // 1 = open, 0 = muted
    bool muted_ = false;
    int out_ = 0;          // first channel of the parent's bus this group mixes into
    bool cue_ = false;     // feeds the cue bus, pre-fader
    dsp::LinearRamp cueGain_;
};

} // namespace loopd
