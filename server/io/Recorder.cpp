#include "server/io/Recorder.h"

#include <pthread.h>

#include <sndfile.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "server/io/AudioFile.h"

namespace loopd {

Recorder::~Recorder() { stop(); }

void Recorder::start() {
    if (synchronous_ || thread_.joinable()) return;
    stopping_ = false;
    thread_ = std::thread([this] { pthread_setname_np(pthread_self(), "loopd-recorder"); run(); });
}

void Recorder::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& e : entries_) close(e);
    entries_.clear();
}

RecordSlot* Recorder::open(const std::string& path, int32_t group, int channels, uint16_t client, double ringSeconds) {
    SF_INFO info{};
    info.channels = channels;
    info.samplerate = static_cast<int>(std::lround(sampleRate_));
    info.format = soundFileFormat(path, "", "float");
    SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
    if (!f) throw std::runtime_error("cannot create " + path + " (" + sf_strerror(nullptr) + ")");
    sf_command(f, SFC_SET_UPDATE_HEADER_AUTO, nullptr, SF_TRUE);
    auto* slot = new RecordSlot(static_cast<size_t>(ringSeconds * sampleRate_), channels);
    slot->id = nextId_.fetch_add(1);
    slot->group = group;
    slot->path = path;
    slot->client = client;
    slot->file = f;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        entries_.push_back({slot, nullptr});
    }
    wake_.notify_all(); // an idle recorder thread sleeps until there is a file to write
    return slot;
}

void Recorder::finish(RecordSlot* slot, std::function<void(RecordSlot&)> onClosed) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < entries_.size(); ++i) {
        if (entries_[i].slot != slot) continue;
        entries_[i].finishing = true;
        entries_[i].onClosed = std::move(onClosed);
        if (synchronous_) {
            close(entries_[i]);
            entries_.erase(entries_.begin() + static_cast<long>(i));
        }
        break;
    }
    wake_.notify_all();
}

void Recorder::discard(RecordSlot* slot) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < entries_.size(); ++i) {
        if (entries_[i].slot != slot) continue;
        entries_[i].discard = true;
        close(entries_[i]);
        entries_.erase(entries_.begin() + static_cast<long>(i));
        break;
    }
}

int Recorder::active() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int>(entries_.size());
}

void Recorder::drain(RecordSlot& s) {
    const int ch = s.ring.numChannels();
    const size_t chunk = 4096;
    if (scratch_.size() < chunk * static_cast<size_t>(ch)) scratch_.resize(chunk * static_cast<size_t>(ch));
    for (;;) {
        const size_t n = s.ring.read(scratch_.data(), chunk);
        if (n == 0) break;
        if (s.file) sf_writef_float(s.file, scratch_.data(), static_cast<sf_count_t>(n));
        s.writtenFrames.fetch_add(n, std::memory_order_relaxed);
    }
}

void Recorder::close(Entry& e) {
    RecordSlot* s = e.slot;
    if (!e.discard) drain(*s);
    if (s->file) { sf_write_sync(s->file); sf_close(s->file); s->file = nullptr; }
    if (e.discard) std::remove(s->path.c_str());
    if (e.onClosed) e.onClosed(*s);
    delete s;
    e.slot = nullptr;
}

void Recorder::drainAll() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& e : entries_) drain(*e.slot);
}

void Recorder::run() {
    auto lastSync = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
        // Nothing open: sleep until a recording starts (an idle server wakes for nothing);
        // otherwise drain every 50 ms.
        if (entries_.empty()) wake_.wait(lock, [this] { return stopping_ || !entries_.empty(); });
        else wake_.wait_for(lock, std::chrono::milliseconds(50));
        for (size_t i = 0; i < entries_.size();) {
            Entry& e = entries_[i];
            if (e.finishing) {
                close(e);
                entries_.erase(entries_.begin() + static_cast<long>(i));
                continue;
            }
            drain(*e.slot);
            ++i;
        }
        if (std::chrono::steady_clock::now() - lastSync > std::chrono::seconds(1)) {
            lastSync = std::chrono::steady_clock::now();
            for (auto& e : entries_) if (e.slot->file) sf_write_sync(e.slot->file);
        }
    }
}

} // namespace loopd
