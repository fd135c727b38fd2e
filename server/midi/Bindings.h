#pragma once
// MIDI bindings in SooperLooper's `.slb` format, read and written as SooperLooper does, so that
// its users' files (and its GUI's saves) work both ways. One binding per line:
//   ch type param  cmd ctrl instance  [lbound ubound  style dmin dmax]
//   ch      MIDI channel from 0
//   type    cc (control change), n (note on/off), on (note on), off (note off), pc (program change)
//   param   controller / note / program number
//   cmd     note, down, up, upforce, hit, set, susnote (SooperLooper's); ctrl a loop command or control name
//   instance  loop index (-1 all, -3 selected)
//   lbound, ubound  the value MIDI 0 and 127 (dmin, dmax) stand for; style gain, toggle, integer
//                   or norm (the default)
// Lines starting with '#' and empty lines are skipped; a line with fewer than five fields is
// reported with its number and skipped. Saved lines carry every field, in SooperLooper's layout
// ("%d %s %d  %s %s %d  %.9g %.9g  %s %d %d"), ordered as SooperLooper orders them: by the
// event (status byte with channel, then parameter), then in the order they were added.
//
// Threads: any (no shared state); the table is owned by one thread at a time.
#include <cstdint>
#include <istream>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace loopd::midi {

struct Binding {
    enum class Style : uint8_t { Normal, Gain, Toggle, Integer };
    int channel = 0;
    std::string type;      // cc, n, on, off, pc
    int param = 0;
    std::string command;   // note, down, up, upforce, hit, set, susnote
    std::string control;
    int instance = -1;
    float lbound = 0.0f, ubound = 1.0f;
    Style style = Style::Normal;
    int dataMin = 0, dataMax = 127;

    // The line as SooperLooper writes it.
    std::string serialize() const;
    // One line; nullopt (and `why`) when it is not a binding.
    static std::optional<Binding> parse(const std::string& line, std::string* why = nullptr);
    // The status byte this binding listens to (0xb0 + channel for cc, ...); 0 for an unknown type.
    int statusByte() const noexcept;
    // The table's key: status byte << 8 | param (0: unknown type).
    int key() const noexcept { const int s = statusByte(); return s ? (s << 8) | (param & 0x7f) : 0; }
    bool operator==(const Binding&) const = default;
};

// What one MIDI event does through one binding, as SooperLooper decides it: a note-off counts as
// a note-on of value 0; the value is clamped to [dataMin, dataMax] and mapped onto
// [lbound, ubound] (norm; integer: rounded; gain: that position on SooperLooper's fader curve;
// toggle: ubound and lbound in turn, `toggleState` remembering the last). `set` sets the control
// (a binding of type `on` ignores value 0, `off` any other); `note` is a press (value > 0; not for
// `off` bindings) or a release (value 0; not for `on` bindings); `susnote` a press or a forced
// release; `down`, `up`, `upforce` and `hit` as named.
struct BoundAction {
    enum class Kind : uint8_t { None, Down, Up, UpForce, Hit, Set } kind = Kind::None;
    float value = 0.0f;
};
BoundAction actionFor(const Binding& b, uint8_t status, uint8_t value, float& toggleState) noexcept;
// SooperLooper's fader curve: position 0..1 to gain (0 → 0, 0.782 → 1 (0 dB), 1 → 2 (+6 dB)).
float faderPositionToGain(float position) noexcept;

class BindingTable {
public:
    struct LoadReport {
        int loaded = 0;
        std::vector<std::string> problems; // "line N: why"
    };
    // Read a file's lines (append false: the table is cleared first).
    LoadReport load(std::istream& in, bool append = false);
    void save(std::ostream& out) const;
    // exclusive: the bindings of the same event are replaced. False for an unknown type.
    bool add(const Binding& b, bool exclusive = false);
    bool remove(const Binding& b);
    void clear() { table_.clear(); }
    std::vector<Binding> all() const;
    // The bindings of one event (status byte with channel, parameter); nullptr when none.
    const std::vector<Binding>* find(int statusByte, int param) const;
    size_t size() const;

private:
    std::map<int, std::vector<Binding>> table_;
};

} // namespace loopd::midi
