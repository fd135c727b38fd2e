#include "server/drivers/JackPortMemory.h"

#include <jack/jack.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <thread>

namespace loopd {

JackPortMemory::~JackPortMemory() { detach(); }

bool JackPortMemory::attach() {
    if (client_) return true;
    jack_status_t status{};
    client_ = jack_client_open("loopd-ports", static_cast<jack_options_t>(JackNoStartServer | JackUseExactName), &status);
    if (!client_) client_ = jack_client_open("loopd-ports", JackNoStartServer, &status);
    if (!client_) return false;
    gone_.store(false);
    jack_on_shutdown(client_, [](void* self) { static_cast<JackPortMemory*>(self)->gone_.store(true, std::memory_order_release); }, this);
    jack_set_port_connect_callback(client_, [](jack_port_id_t, jack_port_id_t, int, void* self) {
        static_cast<JackPortMemory*>(self)->dirty_.store(true, std::memory_order_release);
    }, this);
    jack_set_port_registration_callback(client_, [](jack_port_id_t, int, void* self) {
        static_cast<JackPortMemory*>(self)->dirty_.store(true, std::memory_order_release);
    }, this);
    if (jack_activate(client_) != 0) {
        jack_client_close(client_);
        client_ = nullptr;
        return false;
    }
    dirty_.store(true);
    return true;
}

void JackPortMemory::detach() {
    if (!client_) return;
    // After a shutdown, jack_client_close races with the other clients of this process that
    // libjack is tearing down (RtAudio's, on its own thread): libjack2 deadlocks in it. The
    // client of a dead server holds a few kilobytes and no thread; it is left as it is. A server
    // that is alive may still hang (stopped, overloaded): closing waits for its answer, so it is
    // done on a thread of its own, never on the control thread.
    if (!gone_.load(std::memory_order_acquire)) std::thread([c = client_] { jack_client_close(c); }).detach();
    client_ = nullptr;
}

std::string JackPortMemory::ownClient() const {
    const char** ports = jack_get_ports(client_, nullptr, nullptr, 0);
    if (!ports) return {};
    std::set<std::string> clients;
    for (const char** p = ports; *p; ++p) {
        const std::string name = *p;
        clients.insert(name.substr(0, name.find(':')));
    }
    jack_free(ports);
    // JACK has no working "which client is this process's" query (jack_get_client_pid is not
    // implemented by jackd2's library): the exact name, else the one JACK made unique.
    if (clients.count(name_)) return name_;
    std::string found;
    for (const auto& c : clients)
        if (c.rfind(name_ + "-", 0) == 0) {
            if (!found.empty()) return {}; // ambiguous
            found = c;
        }
    return found;
}

JackPortMemory::Snapshot JackPortMemory::take() const {
    Snapshot s;
    s.at = std::chrono::steady_clock::now();
    const std::string own = ownClient();
    if (own.empty()) return s; // loopd's ports are not there (yet)
    const char** ports = jack_get_ports(client_, (own + ":").c_str(), nullptr, 0);
    if (!ports) return s;
    for (const char** p = ports; *p; ++p) {
        const std::string name = *p;
        if (name.rfind(own + ":", 0) != 0) continue; // the pattern is a regex: keep exact prefixes
        jack_port_t* port = jack_port_by_name(client_, *p);
        if (!port) continue;
        const char** peers = jack_port_get_all_connections(client_, port);
        if (!peers) continue;
        for (const char** q = peers; *q; ++q) s.pairs.emplace_back(name.substr(own.size() + 1), *q);
        jack_free(peers);
    }
    jack_free(ports);
    std::sort(s.pairs.begin(), s.pairs.end());
    s.valid = true;
    return s;
}

void JackPortMemory::poll() {
    if (!client_ || lost_ || gone_.load(std::memory_order_acquire)) return;
    if (!dirty_.exchange(false, std::memory_order_acq_rel)) return;
    Snapshot s = take();
    if (!s.valid) return;
    if (!history_.empty() && s.pairs == history_.back().pairs) return;
    if (history_.size() == kHistory) history_.erase(history_.begin());
    history_.push_back(std::move(s));
}

void JackPortMemory::markLost() {
    if (lost_) return;
    lost_ = true;
    lostAt_ = std::chrono::steady_clock::now();
}

int JackPortMemory::restore(double settleSeconds) {
    if (!client_ || history_.empty()) return -1;
    // The newest copy from before the settle time ahead of the loss, else the oldest.
    const auto before = (lost_ ? lostAt_ : std::chrono::steady_clock::now()) -
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(settleSeconds));
    const Snapshot* use = &history_.front();
    for (const auto& h : history_)
        if (h.at <= before) use = &h;
    const Pairs wanted = use->pairs;
    const std::string own = ownClient();
    if (own.empty()) return -1;
    int made = 0;
    // Disconnect what was not connected then (RtAudio connects new ports to the device's).
    const Snapshot now_ = take();
    for (const auto& [mine, peer] : now_.pairs) {
        if (std::find(wanted.begin(), wanted.end(), std::make_pair(mine, peer)) != wanted.end()) continue;
        jack_port_t* port = jack_port_by_name(client_, (own + ":" + mine).c_str());
        if (!port) continue;
        const bool out = jack_port_flags(port) & JackPortIsOutput;
        const std::string ours = own + ":" + mine;
        jack_disconnect(client_, out ? ours.c_str() : peer.c_str(), out ? peer.c_str() : ours.c_str());
    }
    for (const auto& [mine, peer] : wanted) {
        if (std::find(now_.pairs.begin(), now_.pairs.end(), std::make_pair(mine, peer)) != now_.pairs.end()) continue;
        const std::string ours = own + ":" + mine;
        jack_port_t* port = jack_port_by_name(client_, ours.c_str());
        if (!port) continue;
        const bool out = jack_port_flags(port) & JackPortIsOutput;
        const int r = jack_connect(client_, out ? ours.c_str() : peer.c_str(), out ? peer.c_str() : ours.c_str());
        if (r == 0 || r == EEXIST) ++made;
        else spdlog::warn("JACK: could not reconnect {} to {} (is {} there?)", ours, peer, peer);
    }
    lost_ = false;
    dirty_.store(true);
    return made;
}

} // namespace loopd
