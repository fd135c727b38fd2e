// The loop generator hook (Generator.h).
#include "server/library/Generator.h"

#include <pthread.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "server/io/AudioFile.h"
#include "server/library/LoopFit.h"
#include "server/net/JamAudio.h"

namespace loopd::library {

bool base64Decode(const std::string& in, std::string& out) {
    out.clear();
    out.reserve(in.size() * 3 / 4);
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (char ch : in) {
        int v;
        if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
        else if (ch == '+' || ch == '-') v = 62;
        else if (ch == '/' || ch == '_') v = 63;
        else if (ch == '=') { ++pad; continue; }
        else if (ch == '\n' || ch == '\r' || ch == ' ' || ch == '\t') continue;
        else return false;
        if (pad) return false; // data after padding
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return true;
}

Generator::Generator(Config config) : config_(std::move(config)) {
    thread_ = std::thread([this] { pthread_setname_np(pthread_self(), "loopd-generator"); run(); });
}

Generator::~Generator() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
        if (active_) active_->stop(); // a request in flight ends now, not at its timeout
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Generator::submit(Request r) {
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(r));
    }
    wake_.notify_all();
}

std::vector<Generator::Result> Generator::takeResults() {
    std::lock_guard lock(mutex_);
    std::vector<Result> out;
    out.swap(results_);
    return out;
}

std::pair<std::string, double> Generator::current() const {
    std::lock_guard lock(mutex_);
    if (currentName_.empty()) return {"", 0.0};
    return {currentName_, std::chrono::duration<double>(std::chrono::steady_clock::now() - currentSince_).count()};
}

void Generator::run() {
    for (;;) {
        Request r;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
            if (stop_) return;
            r = std::move(queue_.front());
            queue_.pop_front();
            currentName_ = r.name;
            currentSince_ = std::chrono::steady_clock::now();
        }
        const auto t0 = std::chrono::steady_clock::now();
        Result res = generate(r);
        res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::lock_guard lock(mutex_);
        currentName_.clear();
        results_.push_back(std::move(res));
    }
}

Generator::Result Generator::generate(const Request& r) {
    Result res;
    res.request = r;
    httplib::Client http(config_.url);
    const auto whole = static_cast<time_t>(config_.timeoutSeconds);
    const auto usec = static_cast<time_t>((config_.timeoutSeconds - static_cast<double>(whole)) * 1e6);
    http.set_connection_timeout(std::min<time_t>(whole, 5), whole < 5 ? usec : 0);
    http.set_read_timeout(whole, usec);
    http.set_write_timeout(whole, usec);
    char bpm[32];
    std::snprintf(bpm, sizeof bpm, " %gbpm", std::round(r.bpm * 100.0) / 100.0);
    httplib::MultipartFormDataItems form = {
        {"prompt", r.prompt + bpm, "", ""},
        {"bars", std::to_string(r.bars), "", ""},
        {"loop_type", r.loopType, "", ""},
        {"seed", std::to_string(r.seed), "", ""},
        {"return_format", "wav", "", ""},
    };
    {
        std::lock_guard lock(mutex_);
        if (stop_) return res;
        active_ = &http;
    }
    auto reply = http.Post("/generate/loop", form);
    {
        std::lock_guard lock(mutex_);
        active_ = nullptr;
    }
    if (!reply) {
        res.error = reply.error() == httplib::Error::Read || reply.error() == httplib::Error::Write
                        ? "the generator did not answer within " + std::to_string(static_cast<int>(config_.timeoutSeconds)) + " s (--generator-timeout)"
                        : "the generator at " + config_.url + " is unreachable (" + httplib::to_string(reply.error()) + ")";
        return res;
    }
    std::string body = reply->body;
    const std::string type = reply->get_header_value("Content-Type");
    std::string wav;
    if (type.find("json") != std::string::npos || (!body.empty() && body[0] == '{')) {
        const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
            res.error = "the generator answered " + std::to_string(reply->status) + " with malformed JSON";
            return res;
        }
        for (const char* k : {"error", "detail", "message"})
            if (reply->status != 200 && j.contains(k)) {
                res.error = "the generator answered " + std::to_string(reply->status) + ": " + (j[k].is_string() ? j[k].get<std::string>() : j[k].dump());
                return res;
            }
        if (!j.contains("audio_base64") || !j["audio_base64"].is_string()) {
            res.error = "the generator's answer has no audio_base64";
            return res;
        }
        if (!base64Decode(j["audio_base64"].get<std::string>(), wav)) {
            res.error = "the generator's audio_base64 is not base64";
            return res;
        }
    } else if (reply->status != 200) {
        while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
        res.error = "the generator answered " + std::to_string(reply->status) + ": " + body.substr(0, 300);
        return res;
    } else {
        wav = std::move(body);
    }
    std::string why;
    std::unique_ptr<BufferData> audio = net::decodeAudio(wav, why);
    if (!audio) {
        res.error = "the generator's audio: " + why;
        return res;
    }
    try {
        if (std::fabs(audio->sampleRate - r.sampleRate) > 0.5) {
            std::vector<float> inter(static_cast<size_t>(audio->numFrames * audio->numChannels));
            for (int64_t i = 0; i < audio->numFrames; ++i)
                for (int c = 0; c < audio->numChannels; ++c) inter[static_cast<size_t>(i * audio->numChannels + c)] = audio->channel(c)[i];
            audio = resampleToPlanar(inter.data(), audio->numFrames, audio->numChannels, audio->sampleRate, r.sampleRate);
        }
        audio->sampleRate = r.sampleRate;
        const int64_t frames = std::llround(static_cast<double>(r.bars) * r.beatsPerBar * 60.0 / r.bpm * r.sampleRate);
        res.audio = audio->numFrames == frames ? std::move(audio) : fitLoop(*audio, frames, stretch::Method::Rb3);
    } catch (const std::exception& e) {
        res.error = std::string("the generator's audio could not be fitted: ") + e.what();
    }
    return res;
}

} // namespace loopd::library
