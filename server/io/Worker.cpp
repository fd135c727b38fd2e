#include "server/io/Worker.h"

#include <pthread.h>

namespace loopd {

void Worker::start() {
    if (synchronous_ || thread_.joinable()) return;
    stopping_ = false;
    thread_ = std::thread([this] { pthread_setname_np(pthread_self(), "loopd-worker"); run(); });
}

void Worker::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Worker::post(std::function<void()> job) {
    if (synchronous_) { job(); return; }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        jobs_.push_back(std::move(job));
    }
    wake_.notify_one();
}

size_t Worker::pending() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return jobs_.size();
}

void Worker::run() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
            if (jobs_.empty()) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        job();
    }
}

} // namespace loopd
