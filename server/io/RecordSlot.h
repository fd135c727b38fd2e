#pragma once
// One running recording: the audio thread writes a group's post-fader output (the master:
// post-limiter) into `ring`; the recorder thread drains it to the file.
#include <atomic>
#include <cstdint>
#include <string>

#include "server/rt/SampleRing.h"

typedef struct sf_private_tag SNDFILE;

namespace loopd {

struct RecordSlot {
    RecordSlot(size_t ringFrames, int channels) : ring(ringFrames, channels) {}
    int32_t id = 0;          // the recording's number, reported in /done /rec_start
    int32_t group = 0;       // tapped group (0 = master output)
    std::string path;
    uint16_t client = 0xFFFF;
    SampleRing ring;
    std::atomic<uint64_t> droppedFrames{0}; // ring full: disk too slow
    std::atomic<uint64_t> writtenFrames{0};
    SNDFILE* file = nullptr; // owned by the recorder thread
    int skipFrames = 0;      // [audio] frames still to drop (the limiter's latency on the master)
};

} // namespace loopd
