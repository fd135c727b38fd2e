// The jam's musician on HTTP (JamGuest.h).
#include "server/net/JamGuest.h"

#include <pthread.h>

#include <httplib.h>

#include <chrono>

#include "server/net/JamAudio.h"

namespace loopd::net {

JamGuest::JamGuest(Config config) : config_(std::move(config)) {
    thread_ = std::thread([this] { pthread_setname_np(pthread_self(), "loopd-jamguest"); run(); });
}

JamGuest::~JamGuest() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

std::vector<JamGuest::Event> JamGuest::takeEvents() {
    std::lock_guard lock(mutex_);
    std::vector<Event> out;
    out.swap(events_);
    return out;
}

void JamGuest::post(int64_t cycle, std::unique_ptr<BufferData> take) {
    {
        std::lock_guard lock(mutex_);
        posts_.emplace_back(cycle, std::move(take));
    }
    wake_.notify_all();
}

uint64_t JamGuest::bytesIn() const { std::lock_guard lock(mutex_); return bytesIn_; }
uint64_t JamGuest::bytesOut() const { std::lock_guard lock(mutex_); return bytesOut_; }

void JamGuest::emit(Event e) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(e));
}

void JamGuest::run() {
    httplib::Client http(config_.url);
    http.set_connection_timeout(1, 0);
    http.set_read_timeout(3, 0);
    http.set_write_timeout(3, 0);
    http.set_keep_alive(true);
    if (!config_.token.empty()) http.set_bearer_token_auth(config_.token);
    const std::string who = "musician=" + config_.name;
    using Clock = std::chrono::steady_clock;
    Clock::time_point lastAnswer = Clock::now();
    bool unreachableSaid = false;
    std::string lastProblem;
    int64_t mixCycle = -1, lastCycle = -2;
    std::string lastTurn;
    for (;;) {
        // Takes first: they have a deadline.
        for (;;) {
            std::pair<int64_t, std::unique_ptr<BufferData>> job;
            {
                std::lock_guard lock(mutex_);
                if (stop_) return;
                if (posts_.empty()) break;
                job = std::move(posts_.front());
                posts_.pop_front();
            }
            const std::string flac = encodeFlac(*job.second);
            auto res = http.Post(("/jam/take/" + std::to_string(job.first) + "?" + who).c_str(), flac, "audio/flac");
            Event e{Event::Kind::Posted, {}, job.first, nullptr, ""};
            if (!res) e.status = "unposted: " + httplib::to_string(res.error());
            else if (res->status == 202) e.status = "posted";
            else {
                std::string body = res->body;
                while (!body.empty() && body.back() == '\n') body.pop_back();
                e.status = "refused (" + std::to_string(res->status) + "): " + body;
            }
            {
                std::lock_guard lock(mutex_);
                bytesOut_ += flac.size();
            }
            emit(std::move(e));
        }
        auto res = http.Get(("/jam/state?" + who).c_str());
        if (!res) {
            if (!unreachableSaid && Clock::now() - lastAnswer > std::chrono::duration<double>(config_.unreachableSeconds)) {
                unreachableSaid = true;
                emit(Event{Event::Kind::Problem, {}, -1, nullptr, "unreachable: " + config_.url + " (" + httplib::to_string(res.error()) + ")"});
            }
        } else {
            lastAnswer = Clock::now();
            unreachableSaid = false;
            {
                std::lock_guard lock(mutex_);
                bytesIn_ += res->body.size();
            }
            JamState s;
            std::string error;
            if (res->status != 200) error = "the producer answered " + std::to_string(res->status) + ": " + res->body;
            else if (!parseJamState(res->body, s, error)) error = "malformed state: " + error;
            if (!error.empty()) {
                while (!error.empty() && error.back() == '\n') error.pop_back();
                if (error != lastProblem) emit(Event{Event::Kind::Problem, {}, -1, nullptr, error});
                lastProblem = error;
            } else {
                lastProblem.clear();
                if (s.cycle != lastCycle || s.turn != lastTurn) {
                    lastCycle = s.cycle;
                    lastTurn = s.turn;
                    emit(Event{Event::Kind::State, s, s.cycle, nullptr, ""});
                }
                // The newest cycle's mix, once.
                if (s.cycle >= 0 && s.cycle > mixCycle) {
                    auto mix = http.Get(("/jam/mix/" + std::to_string(s.cycle)).c_str());
                    if (mix && mix->status == 200) {
                        {
                            std::lock_guard lock(mutex_);
                            bytesIn_ += mix->body.size();
                        }
                        std::string why;
                        std::unique_ptr<BufferData> audio = decodeAudio(mix->body, why);
                        mixCycle = s.cycle;
                        if (audio) emit(Event{Event::Kind::Mix, {}, s.cycle, std::move(audio), ""});
                        else emit(Event{Event::Kind::Problem, {}, s.cycle, nullptr, "malformed mix: " + why});
                    } else if (mix && mix->status == 410) {
                        mixCycle = s.cycle;
                    }
                }
            }
        }
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, std::chrono::duration<double>(config_.pollSeconds), [this] { return stop_ || !posts_.empty(); });
        if (stop_) return;
    }
}

} // namespace loopd::net
