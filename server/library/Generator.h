#pragma once
// The loop generator hook (SPEC 4.10; jerry4loops' AI backend): a stable-audio-style HTTP
// backend asked for a loop on the generator's own thread (never the audio thread, never the file
// worker: a request may take minutes). POST {url}/generate/loop, multipart form: prompt (with
// " {bpm}bpm" appended), bars, loop_type, seed, return_format=wav; the reply is JSON with
// `audio_base64` (a WAV), or a WAV body. The audio is decoded (libsndfile), resampled to the
// server's rate and fitted (LoopFit, Rubber Band R3) to exactly `bars` at the tempo asked for.
//
// Threads: submit/take* [control]; the requests on the generator's thread.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/engine/BufferData.h"

namespace httplib { class Client; }

namespace loopd::library {

class Generator {
public:
    struct Config {
        std::string url;              // http://host:port
        double timeoutSeconds = 120.0;
    };
    struct Request {
        std::string name, prompt, loopType, target;
        int bars = 4;
        int64_t seed = -1;
        double bpm = 120.0;
        int beatsPerBar = 4;
        double sampleRate = 48000.0;
        uint16_t client = 0;
    };
    struct Result {
        Request request;
        std::unique_ptr<BufferData> audio; // fitted; null on error
        std::string error;                 // the backend's words, or what went wrong
        double seconds = 0.0;              // how long the backend took
    };
    explicit Generator(Config config);
    ~Generator();
    Generator(const Generator&) = delete;
    Generator& operator=(const Generator&) = delete;

    void submit(Request r);
    std::vector<Result> takeResults();
    // The request being worked on (name, seconds since it was sent); empty name: none.
    std::pair<std::string, double> current() const;
    const Config& config() const { return config_; }

private:
    void run();
    Result generate(const Request& r);

    Config config_;
    std::thread thread_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;                                  // [mutex_]
    std::deque<Request> queue_;                          // [mutex_]
    std::vector<Result> results_;                        // [mutex_]
    std::string currentName_;                            // [mutex_]
    std::chrono::steady_clock::time_point currentSince_; // [mutex_]
    httplib::Client* active_ = nullptr;                  // [mutex_] the request in flight (stopped when the server quits)
};

// Standard base64 (RFC 4648; whitespace skipped); false on any other character.
bool base64Decode(const std::string& in, std::string& out);

} // namespace loopd::library
