#pragma once
// Disk side of /rec_start and /rec_stop. The audio thread writes each recording's frames into
// its slot's ring; this thread drains the rings to WAV files every 50 ms. libsndfile rewrites
// the header after every write, and the file is synced to disk every second, so a crash or
// power loss loses at most about one second.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/io/RecordSlot.h"

namespace loopd {

class Recorder {
public:
    Recorder(double sampleRate, bool synchronous) : sampleRate_(sampleRate), synchronous_(synchronous) {}
    ~Recorder();
    Recorder(const Recorder&) = delete;
    Recorder& operator=(const Recorder&) = delete;

    void start();   // [control]
    void stop();    // [control] closes every file

    // [worker] Opens the file and registers a slot (ring of ringSeconds). Throws with the reason.
    RecordSlot* open(const std::string& path, int32_t group, int channels, uint16_t client,
                     double ringSeconds = 4.0);
    // [control] The audio thread no longer writes to `slot`: drain it, close it, then call
    // onClosed (on the recorder thread, or at once when synchronous) and delete it.
    void finish(RecordSlot* slot, std::function<void(RecordSlot&)> onClosed);
    // [control] The audio thread refused the slot: close and remove the file.
    void discard(RecordSlot* slot);
    // [recorder | nrt] Drain every ring to its file.
    void drainAll();
    int active() const;

private:
    struct Entry { RecordSlot* slot; std::function<void(RecordSlot&)> onClosed; bool finishing = false; bool discard = false; };
    void run();
    void drain(RecordSlot& s);
    void close(Entry& e);

    const double sampleRate_;
    const bool synchronous_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::vector<Entry> entries_;
    bool stopping_ = false;
    std::thread thread_;
    std::atomic<int32_t> nextId_{1};
    std::vector<float> scratch_;
};

} // namespace loopd
