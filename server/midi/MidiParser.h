#pragma once
// A MIDI byte stream into whole messages, as the MIDI 1.0 specification defines the stream:
// channel messages with their data bytes (two, or one for program change and channel pressure),
// running status (data bytes without a status byte repeat the last channel status), system
// common messages (they cancel running status; SysEx is skipped up to its 0xF7), and real-time
// bytes (clock, start, continue, stop, …), which may come anywhere — even inside another
// message — and are passed on at once without disturbing it. A status byte in the middle of a
// message drops the partial one; data bytes with nothing to belong to are dropped. So nothing
// reaches a handler half-parsed.
//
// Threads: [audio]-safe (no allocation, no locks); one stream per parser.
#include <cstddef>
#include <cstdint>

namespace loopd::midi {

struct Message {
    uint8_t status = 0; // with the channel for channel messages
    uint8_t data1 = 0, data2 = 0;
    uint8_t size = 1;   // bytes in the message (1..3)
    uint8_t channel() const noexcept { return status & 0x0f; }
    uint8_t kind() const noexcept { return status < 0xf0 ? static_cast<uint8_t>(status & 0xf0) : status; }
};

class MidiParser {
public:
    // Every whole message in `bytes`, in order, to onMessage(const Message&).
    template <class F>
    void feed(const uint8_t* bytes, size_t n, F&& onMessage) noexcept {
        for (size_t i = 0; i < n; ++i) {
            const uint8_t b = bytes[i];
            if (b >= 0xf8) { // real time: alone, anywhere
                Message m;
                m.status = b;
                onMessage(static_cast<const Message&>(m));
                continue;
            }
            if (b & 0x80) {
                inSysex_ = false;
                if (b == 0xf0) { inSysex_ = true; running_ = 0; have_ = 0; continue; }
                if (b == 0xf7) { running_ = 0; have_ = 0; continue; } // end of SysEx (or stray)
                status_ = b;
                have_ = 0;
                need_ = dataBytes(b);
                running_ = b < 0xf0 ? b : 0; // system common cancels running status
                if (need_ == 0) { emit(onMessage); status_ = 0; }
                continue;
            }
            // A data byte.
            if (inSysex_) continue;
            if (status_ == 0) {
                if (running_ == 0) continue; // stray
                status_ = running_;
                need_ = dataBytes(running_);
                have_ = 0;
            }
            data_[have_++] = b;
            if (have_ == need_) {
                emit(onMessage);
                have_ = 0;
                status_ = 0; // a further data byte starts again from running status (if any)
            }
        }
    }
    void reset() noexcept { status_ = running_ = 0; have_ = need_ = 0; inSysex_ = false; }

    static uint8_t dataBytes(uint8_t status) noexcept {
        if (status < 0xf0) {
            const uint8_t k = status & 0xf0;
            return (k == 0xc0 || k == 0xd0) ? 1 : 2;
        }
        switch (status) {
        case 0xf1: case 0xf3: return 1; // MTC quarter frame, song select
        case 0xf2: return 2;            // song position pointer
        default: return 0;              // tune request, undefined
        }
    }

private:
    template <class F>
    void emit(F& onMessage) noexcept {
        Message m;
        m.status = status_;
        m.data1 = have_ > 0 ? data_[0] : 0;
        m.data2 = have_ > 1 ? data_[1] : 0;
        m.size = static_cast<uint8_t>(1 + have_);
        onMessage(static_cast<const Message&>(m));
    }
    uint8_t status_ = 0;  // the message being read (0: none)
    uint8_t running_ = 0; // running status (0: none)
    uint8_t data_[2] = {0, 0};
    uint8_t have_ = 0, need_ = 0;
    bool inSysex_ = false;
};

} // namespace loopd::midi
