#pragma once
// Offline rendering (scsynth's -N, supernova's sndfile backend): a score's bundles reach the
// server at their sample, the engine runs block by block as fast as it can, the input comes from
// a file and the output goes to one. The same engine and OSC front end as in real time; only the
// clock differs (timetags are seconds from sample 0). Renders are deterministic: the golden
// renders (tests/e2e/golden.py) compare them bit for bit.
//
// Threads: one, the caller's: it hands packets over, renders, and lets the caller drain replies
// after each block. The driver knows nothing of the OSC front end: it is given callbacks.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace loopd {

class Engine;
struct BufferData;

// A score: [int32 big-endian length][OSC bundle] records, as scsynth's.
struct NrtScore {
    std::vector<std::vector<char>> packets;
    std::vector<std::pair<uint64_t, size_t>> order; // (timetag, packet index), by time (stable)
    uint64_t lastTag = 0;
    // Reads and checks every record (each a well-formed bundle); throws std::runtime_error with
    // the record at fault.
    static NrtScore read(const std::string& path);
    // The length of the render: up to the last bundle's time.
    int64_t frames(double sampleRate) const noexcept;
    // The most bytes of packets handed over before one block (NrtDriver::render delivers a
    // block's packets, nested bundles and all, just before it): what sizes the engine's queues.
    size_t mostBytesInABlock(double sampleRate, int blockSize) const noexcept;
};

class NrtDriver {
public:
    // deliver: hand one packet to the server (the OSC front end); afterBlock: drain its replies
    // and whatever else follows a block (the recorder). Throws std::runtime_error when the output
    // cannot be written.
    NrtDriver(Engine& engine, const BufferData* input, const std::string& outPath,
              std::function<void(const char*, size_t)> deliver, std::function<void()> afterBlock);
    ~NrtDriver();
    NrtDriver(const NrtDriver&) = delete;
    NrtDriver& operator=(const NrtDriver&) = delete;

    // Renders the score to the output file (file frame k is engine frame k + the limiter's
    // look-ahead, so that the output lines up with the score); returns the frames written.
    int64_t render(const NrtScore& score);
    // The same loop for any feed: beforeBlock(pos) runs before the block at engine sample `pos`
    // (true: it has more to hand over, keep rendering past totalFrames), afterBlock(pos) after it.
    int64_t renderBlocks(int64_t totalFrames, const std::function<bool(int64_t)>& beforeBlock,
                         const std::function<void(int64_t)>& afterBlock = {});
    // One more block, unwritten, then `after`: lets commands sent after the render (closing
    // recordings) run.
    void flush(const std::function<void()>& after);

private:
    Engine& engine_;
    const BufferData* input_;
    std::function<void(const char*, size_t)> deliver_;
    std::function<void()> afterBlock_;
    void* out_ = nullptr; // SNDFILE
    std::vector<float> inBlock_, outBlock_;
    std::vector<const float*> inPtr_;
    std::vector<float*> outPtr_;
};

} // namespace loopd
