#pragma once
// The buffer module: scsynth's buffer commands (/b_alloc, /b_allocRead, /b_read, /b_write,
// /b_free, /b_zero, /b_query, /b_get, /b_getn, /b_set, /b_setn, /b_gen sine1/sine2/sine3/cheby/
// copy, /b_close) and the buffer services other modules use (load a file into a buffer, free
// buffers, swap new content in). Commands are validated on the control thread, run on the worker
// in arrival order (asynchronous ones with their completion messages), and swapped in by the
// audio thread; buffers change copy-on-write, so the audio thread reads the old data until the
// new is in. It owns the worker's view of the buffer table and the set of known buffers.
//
// Threads: handlers on the control thread; jobs, swapBuffer and the worker's table on the
// worker; bufferKnown and the known set from either (knownMutex_).
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "server/control/Module.h"
#include "server/io/AudioFile.h"

namespace loopd {

class Buffers final : public Module {
public:
    explicit Buffers(Controller& c); // registers the addresses

    // [control] The buffer number argument, checked against the table.
    int32_t bufnum(Msg& m);
    // How files load here: the server's rate, the buffer limit, the memory budget naming `what`.
    LoadOptions loadOptions(const std::string& what);
    // [control] Load `path` into buffer `b` on the worker (/done `address` b when swapped in).
    void loadBuffer(Msg& m, int32_t b, const std::string& path, const char* address);
    // [control] The same with the data made on the worker by `make` (which throws a sentence for
    // /fail): a section stretched offline (/cue_section), anything derived from a file.
    void loadBufferWith(Msg& m, int32_t b, const char* address, std::function<std::unique_ptr<BufferData>()> make);
    // [any] Loaded or loading.
    bool bufferKnown(int32_t b);
    // [any] Every buffer loaded or loading, by number.
    std::vector<int32_t> knownBuffers();
    // [worker] What buffer `b` holds now, as the worker's jobs see it (nullptr: nothing).
    BufferData* workerBuffer(int32_t b) const { return b >= 0 && static_cast<size_t>(b) < workerBuffers_.size() ? workerBuffers_[static_cast<size_t>(b)] : nullptr; }
    // [control] Free every known buffer `which` picks (on the worker), then /done `address`.
    void freeBuffers(uint16_t client, const char* address, std::function<bool(int32_t)> which);
    // [worker] Put `data` into buffer `b`; the completion message (if any) runs when it is in;
    // announce false: no /done.
    // `at`: cmd::SwapBuffer's (0 at once, 1 the clock's next beat, 2 its next bar).
    void swapBuffer(uint16_t client, const char* address, int32_t b, std::unique_ptr<BufferData> data,
                    uint32_t completion = 0, bool announce = true, uint8_t at = 0);

private:
    void hBAlloc(Msg&); void hBAllocRead(Msg&); void hBRead(Msg&); void hBWrite(Msg&); void hBFree(Msg&);
    void hBZero(Msg&); void hBQuery(Msg&);
    void hBGet(Msg&); void hBGetn(Msg&); void hBSet(Msg&); void hBSetn(Msg&); void hBGen(Msg&); void hBClose(Msg&);
    // [control] Change single samples of a buffer (copy on write, on the worker).
    void changeSamples(uint16_t client, const char* address, int32_t b, std::vector<std::pair<int32_t, float>> values);

    std::vector<BufferData*> workerBuffers_; // the worker's view of the buffer table [worker]
    std::mutex knownMutex_;
    std::unordered_set<int32_t> knownBuffers_; // loaded or loading [knownMutex_]
};

} // namespace loopd
