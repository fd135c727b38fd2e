// The jam's producer on HTTP (JamHost.h).
#include "server/net/JamHost.h"

#include <httplib.h>

#include <stdexcept>

#include "server/net/JamAudio.h"

namespace loopd::net {

namespace {
bool parseCycle(const std::string& s, int64_t& out) {
    if (s.empty() || s.size() > 18) return false;
    size_t i = s[0] == '-' ? 1 : 0;
    if (i == s.size()) return false;
    for (size_t k = i; k < s.size(); ++k)
        if (s[k] < '0' || s[k] > '9') return false;
    out = std::stoll(s);
    return true;
}
} // namespace

JamHost::JamHost(Config config) : config_(std::move(config)), http_(std::make_unique<httplib::Server>()) {
    session_ = config_.session;
    session_.cycle = -1;
    httplib::Server& h = *http_;
    h.set_payload_max_length(static_cast<size_t>(64) << 20);
    h.set_read_timeout(3, 0); // a stalled upload holds /jam_leave this long at most
    h.set_write_timeout(3, 0);
    // Every request: the token, and the bytes counted.
    h.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        {
            std::lock_guard lock(mutex_);
            bytesIn_ += req.body.size() + req.path.size();
        }
        if (!authorised(req.get_header_value("Authorization"), req.get_param_value("token"))) {
            res.status = 401;
            res.set_content("a jam token is needed (Authorization: Bearer TOKEN)\n", "text/plain");
            return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });
    h.set_post_routing_handler([this](const httplib::Request&, httplib::Response& res) {
        std::lock_guard lock(mutex_);
        bytesOut_ += res.body.size();
    });
    h.Get("/jam/state", [this](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mutex_);
        if (req.has_param("musician")) {
            const std::string name = req.get_param_value("musician");
            if (!validJamName(name)) {
                res.status = 400;
                res.set_content("a musician's name is 1 to 32 letters, digits, '_', '-' or '.'\n", "text/plain");
                return;
            }
            const auto now = std::chrono::steady_clock::now();
            bool known = false;
            for (Musician& m : musicians_)
                if (m.name == name) { m.seen = now; known = true; }
            if (!known) musicians_.push_back(Musician{name, now});
        }
        JamState s = session_;
        for (const Musician& m : musicians_) s.musicians.push_back(m.name);
        res.set_content(toJson(s), "application/json");
    });
    h.Get(R"(/jam/mix/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
        int64_t cycle = 0;
        if (!parseCycle(req.matches[1], cycle)) {
            res.status = 400;
            res.set_content("a cycle is a whole number\n", "text/plain");
            return;
        }
        std::shared_ptr<Mix> mix;
        {
            std::lock_guard lock(mutex_);
            auto it = mixes_.find(cycle);
            if (it == mixes_.end()) {
                const bool old = !mixes_.empty() && cycle < mixes_.begin()->first;
                res.status = old ? 410 : 404;
                res.set_content(old ? "that cycle's mix is no longer kept\n" : "that cycle's mix is not ready\n", "text/plain");
                return;
            }
            mix = it->second;
        }
        std::lock_guard encode(mix->encode); // FLAC once, outside the state's lock
        if (mix->flac.empty()) mix->flac = encodeFlac(*mix->audio);
        res.set_content(mix->flac, "audio/flac");
    });
    h.Post(R"(/jam/take/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
        const std::string name = req.get_param_value("musician");
        int64_t cycle = 0;
        auto refuse = [&](int status, const std::string& why, bool report) {
            res.status = status;
            res.set_content(why + "\n", "text/plain");
            if (report) {
                std::lock_guard lock(mutex_);
                event(cycle, name, why);
            }
        };
        if (!parseCycle(req.matches[1], cycle)) return refuse(400, "a cycle is a whole number", false);
        if (!validJamName(name)) return refuse(400, "no musician=NAME (1 to 32 letters, digits, '_', '-' or '.')", false);
        std::string turnOf, problem;
        bool late = false, taken = false, known = false;
        {
            std::lock_guard lock(mutex_);
            for (const Musician& m : musicians_) known |= m.name == name;
            auto it = turns_.find(cycle);
            turnOf = it == turns_.end() ? std::string() : it->second;
            taken = taken_.count(cycle) > 0;
            late = session_.cycle >= cycle + 2;
        }
        if (!known) return refuse(403, "unknown musician " + name + " (GET /jam/state?musician=NAME joins)", false);
        if (turnOf != name)
            return refuse(409, turnOf.empty() ? "cycle " + std::to_string(cycle) + " is nobody's turn"
                                              : "cycle " + std::to_string(cycle) + " is " + turnOf + "'s turn", true);
        if (taken) return refuse(409, "cycle " + std::to_string(cycle) + " has its take already", true);
        if (late) return refuse(410, "late: cycle " + std::to_string(cycle) + "'s take was due before cycle " + std::to_string(cycle + 2) + " began", true);
        std::string error;
        std::unique_ptr<BufferData> audio = decodeAudio(req.body, error);
        if (!audio) return refuse(400, "malformed: " + error, true);
        if (static_cast<int64_t>(audio->sampleRate) != static_cast<int64_t>(config_.session.sampleRate))
            return refuse(400, "wrong rate: " + std::to_string(static_cast<int64_t>(audio->sampleRate)) + " Hz, the session runs at " +
                                   std::to_string(static_cast<int64_t>(config_.session.sampleRate)) + " Hz", true);
        if (audio->numFrames != config_.session.loopFrames)
            return refuse(400, "wrong length: " + std::to_string(audio->numFrames) + " frames, a cycle is " +
                                   std::to_string(config_.session.loopFrames), true);
        std::lock_guard lock(mutex_);
        if (taken_.count(cycle)) return refuse(409, "cycle " + std::to_string(cycle) + " has its take already", false);
        taken_[cycle] = true;
        takes_.push_back(Take{cycle, name, std::move(audio)});
        event(cycle, name, "accepted");
        res.status = 202;
        res.set_content("accepted\n", "text/plain");
    });
    if (config_.port == 0) {
        port_ = h.bind_to_any_port(config_.bind);
        if (port_ <= 0) throw std::runtime_error("the jam cannot listen on " + config_.bind);
    } else {
        if (!h.bind_to_port(config_.bind, config_.port))
            throw std::runtime_error("the jam cannot listen on " + config_.bind + ":" + std::to_string(config_.port) + " (in use?)");
        port_ = config_.port;
    }
    thread_ = std::thread([this] { http_->listen_after_bind(); });
    // cpp-httplib's stop() does nothing before its loop runs (a /jam_leave right after /jam_host
    // would then wait for ever in the destructor): wait until it does.
    for (int i = 0; i < 5000 && !http_->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

JamHost::~JamHost() {
    http_->stop();
    if (thread_.joinable()) thread_.join();
}

bool JamHost::authorised(const std::string& header, const std::string& param) const {
    if (config_.token.empty()) return true;
    return header == "Bearer " + config_.token || param == config_.token;
}

bool JamHost::alive(const Musician& m, std::chrono::steady_clock::time_point now) const {
    return now - m.seen < std::chrono::duration<double>(config_.aliveSeconds);
}

void JamHost::event(int64_t cycle, const std::string& musician, const std::string& status) {
    events_.push_back(Event{cycle, musician, status});
}

std::string JamHost::beginCycle(int64_t cycle) {
    std::lock_guard lock(mutex_);
    session_.cycle = cycle;
    // The take of cycle - 2 is due now.
    if (auto it = turns_.find(cycle - 2); it != turns_.end() && !it->second.empty() && !taken_.count(cycle - 2))
        event(cycle - 2, it->second, "missing");
    // Round robin over the musicians seen lately.
    std::string turn;
    const auto now = std::chrono::steady_clock::now();
    for (size_t k = 1; k <= musicians_.size(); ++k) {
        const size_t i = (lastPick_ + k) % musicians_.size();
        if (alive(musicians_[i], now)) {
            lastPick_ = i;
            turn = musicians_[i].name;
            break;
        }
    }
    turns_[cycle] = turn;
    session_.turn = turn;
    while (!turns_.empty() && turns_.begin()->first < cycle - 8) turns_.erase(turns_.begin());
    while (!taken_.empty() && taken_.begin()->first < cycle - 8) taken_.erase(taken_.begin());
    return turn;
}

void JamHost::setMix(int64_t cycle, std::unique_ptr<BufferData> audio) {
    auto mix = std::make_shared<Mix>();
    mix->audio = std::move(audio);
    std::lock_guard lock(mutex_);
    mixes_[cycle] = std::move(mix);
    while (mixes_.size() > 4) mixes_.erase(mixes_.begin());
}

std::vector<JamHost::Take> JamHost::takeTakes() {
    std::lock_guard lock(mutex_);
    std::vector<Take> out;
    out.swap(takes_);
    return out;
}

std::vector<JamHost::Event> JamHost::takeEvents() {
    std::lock_guard lock(mutex_);
    std::vector<Event> out;
    out.swap(events_);
    return out;
}

JamState JamHost::state() const {
    std::lock_guard lock(mutex_);
    JamState s = session_;
    for (const Musician& m : musicians_) s.musicians.push_back(m.name);
    return s;
}

uint64_t JamHost::bytesOut() const { std::lock_guard lock(mutex_); return bytesOut_; }
uint64_t JamHost::bytesIn() const { std::lock_guard lock(mutex_); return bytesIn_; }

} // namespace loopd::net
