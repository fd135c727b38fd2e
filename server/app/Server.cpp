// Wiring: driver + engine + worker + recorder + controller + transport (real time), or the same
// with the offline driver (NrtDriver). main() only parses flags and calls one of these.
#include <sys/mman.h>
#include <spdlog/spdlog.h>

#include <osc/OscReceivedElements.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

#include "osc/Transport.h"
#include "server/io/AudioFile.h"
#include "server/control/Controller.h"
#include "server/drivers/DeviceSupervisor.h"
#include "server/drivers/Driver.h"
#include "server/midi/AlsaMidi.h"
#include "server/drivers/NrtDriver.h"
#include "server/engine/Engine.h"
#include "server/app/Options.h"
#include "server/engine/StretchWorker.h"
#include "server/app/Version.h"
#include "server/control/ControlClock.h"
#include "server/drivers/ReplayFeed.h"
#include "server/io/SessionLog.h"

#include <unistd.h>
#include <ctime>
#include <filesystem>

namespace loopd {
namespace {

std::atomic<bool> g_signalled{false};
void onSignal(int) { g_signalled = true; }

// Applies --config / --bpm-config on top of the flags; throws with the reason.
FileConfig fileConfig(const Options& o) {
    FileConfig f;
    if (!o.bpmConfig.empty()) loadConfigFile(o.bpmConfig, f);
    if (!o.config.empty()) loadConfigFile(o.config, f);
    for (const auto& w : f.warnings) spdlog::warn("{}", w);
    return f;
}

// The same, reporting a bad file in the log; false: do not start.
bool loadFiles(const Options& o, FileConfig& files) {
    try {
        files = fileConfig(o);
        return true;
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return false;
    }
}

EngineConfig engineConfig(const Options& o, double rate, bool realtime, const FileConfig& f) {
    EngineConfig c;
    c.bpm = f.bpm > 0 ? f.bpm : o.bpm;
    c.beatsPerBar = f.meter > 0 ? f.meter : o.meter;
    c.followTempo = !o.disableTimeStretch;
    c.enableFilters = o.enableFilters;
    c.cueOutput = o.cueOut;
    if (o.cueOut >= 0 && o.cueOut + 1 >= o.outputs)
        throw std::runtime_error("--cue-out " + std::to_string(o.cueOut) + " needs --outputs of at least " + std::to_string(o.cueOut + 2));
    c.sampleRate = rate;
    c.blockSize = o.blockSize;
    c.numInputs = o.inputs;
    c.numOutputs = o.outputs;
    c.commandQueueSize = static_cast<size_t>(o.commandQueue);
    c.limiterCeilingDb = o.limiterCeilingDb;
    c.declickSeconds = o.declickMs / 1000.0;
    c.realtimeClock = realtime;
    c.captureSeconds = o.captureSeconds;
    return c;
}

ControllerOptions controllerOptions(const Options& o, bool offline, const FileConfig& f) {
    ControllerOptions c;
    c.bpm = f.bpm > 0 ? f.bpm : o.bpm;
    c.beatsPerBar = f.meter > 0 ? f.meter : o.meter;
    c.movement = f.movement;
    c.analysis = f.analysis;
    if (o.bpmRange.size() == 2) {
        if (!(o.bpmRange[1] >= 2.0 * o.bpmRange[0]))
            throw std::runtime_error("--bpm-range must span an octave (HI >= 2 x LO): a tempo folded into it needs room to land");
        c.analysis.bpmLow = o.bpmRange[0];
        c.analysis.bpmHigh = o.bpmRange[1];
    }
    c.followTempo = !o.disableTimeStretch;
    c.stretchMethod = o.stretchMethod;
    c.maxBufferSamples = static_cast<int64_t>(o.maxBufferMb) * (1 << 20) / 4;
    c.offline = offline;
    c.loopSeconds = o.loopSeconds;
    c.undoSeconds = o.undoSeconds;
    c.captureSeconds = o.captureSeconds;
    c.jamToken = o.jamToken;
    c.bankDir = o.bank;
    c.generatorUrl = o.generator;
    c.generatorTimeout = o.generatorTimeout;
    c.jamBind = o.jamBind;
    c.maxMemoryBytes = o.maxMemoryMb > 0 ? int64_t(o.maxMemoryMb) << 20 : MemoryBudget::halfOfPhysicalMemory();
    return c;
}

// The Crowdstream server's startup flags, run as the OSC commands they stand for.
void runStartupActions(const Options& o, Controller& controller) {
    static const int32_t base[4] = {100, 1100, 2100, 3100};
    auto run = [&](const osc::MessageBuilder& m) { controller.runInternal(m.bytes()); };
    if (!o.project.empty()) run(osc::MessageBuilder("/project_load").s(o.project));
    if (!o.midiBindings.empty()) run(osc::MessageBuilder("/load_midi_bindings").s(o.midiBindings).s(""));
    if (o.midiClockOut) run(osc::MessageBuilder("/set").s("output_midi_clock").f(1.0f));
    if (o.link) run(osc::MessageBuilder("/link").i(1));
    if (!o.ab.empty()) run(osc::MessageBuilder("/crossfade_levels").f(static_cast<float>(o.ab[0])).f(static_cast<float>(o.ab[1])));
    if (!o.levels.empty()) {
        osc::MessageBuilder m("/deck_levels");
        for (double v : o.levels) m.f(static_cast<float>(v));
        run(m);
    }
    if (o.watch) run(osc::MessageBuilder("/print_clock").i(1));
    for (int d = 0; d < 4; ++d) {
        if (o.deck[d].empty()) continue;
        run(osc::MessageBuilder("/load_buffer").i(base[d]).s(o.deck[d]));
        if (d == 2 && o.cAt >= 0) continue;
        run(osc::MessageBuilder("/play_stem").i(base[d]).f(static_cast<float>(o.rate)).f(static_cast<float>(o.vol)).i(1).f(0.0f));
    }
    if (!o.cPreload.empty() && o.deck[2].empty()) run(osc::MessageBuilder("/load_buffer").i(base[2]).s(o.cPreload));
    if (o.cAt >= 0) run(osc::MessageBuilder("/schedule_c_at").f(static_cast<float>(o.cAt)));
    for (int i = 0; i < o.loops; ++i) run(osc::MessageBuilder("/loop_add").i(2).f(0.0f));
    if (o.paMute) run(osc::MessageBuilder("/set").s("pa_mute").f(1.0f));
}

// Input + output latency the loopers compensate: the flags, else what the driver reports.
int roundTrip(const Options& o, Driver* driver) {
    const int reported = driver ? driver->roundTripFrames() : 0;
    if (o.inputLatency < 0 && o.outputLatency < 0) return reported;
    return std::max(0, o.inputLatency) + std::max(0, o.outputLatency);
}

std::string utcNow() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char b[32];
    std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return b;
}

std::string currentDir() {
    std::error_code ec;
    return std::filesystem::current_path(ec).string();
}

std::string versionString() {
    return std::to_string(kVersionMajor) + "." + std::to_string(kVersionMinor) + "." + std::to_string(kVersionPatch) + " (" + kGitCommit + ")";
}

} // namespace

int runServer(const Options& o) {
    // The ports first: a port in use stops the start before any device is touched.
    osc::Transport transport;
    osc::Transport::Options t;
    t.bindAddress = o.bind;
    t.udpPort = o.udpPort;
    t.tcpPort = o.tcpPort == -2 ? osc::Transport::kSameAsUdp : o.tcpPort;
    try {
        transport.open(t);
    } catch (const std::exception& e) {
        spdlog::critical("cannot listen: {}", e.what());
        return 1;
    }
    DriverOptions d;
    d.name = o.driver;
    d.device = o.device;
    d.sampleRate = o.sampleRate;
    d.periodFrames = o.bufferSize;
    d.numInputs = o.inputs;
    d.numOutputs = o.outputs;
    d.clientName = o.jackName;
    d.inputFile = o.nullInput;
    d.midiPorts = o.midi == "auto" || o.midi == "jack";
    std::unique_ptr<Driver> driver;
    try {
        driver = openDriver(d);
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
    FileConfig files;
    if (!loadFiles(o, files)) return 1;
    // Keep the audio thread free of page faults: lock what is mapped now and what comes later
    // (best effort: needs root, CAP_IPC_LOCK or a memlock limit, as JACK's own clients do).
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) spdlog::debug("mlockall not permitted; pages may fault on the audio thread");
    PathPolicy paths(o.roots);
    const double rate = driver->sampleRate();
    const int period = driver->periodFrames();
    const std::string driverName = driver->name();
    EngineConfig ec = engineConfig(o, rate, true, files);
    ec.roundTripLatency = roundTrip(o, driver.get());
    ec.stretchAhead = true; // stretched players render ahead on the stretch worker
    Engine engine(ec);
    StretchWorker stretchWorker; // after the engine: stopped and gone before the engine frees nodes
    Worker worker;
    Recorder recorder(rate, false);
    Controller controller(engine, worker, recorder, paths, controllerOptions(o, false, files));
    controller.setDriverInfo(driverName, period);
    controller.setStretchWorker(&stretchWorker);
    controller.setSender([&transport](const osc::Endpoint& to, const char* data, size_t size) { return transport.send(to, data, size); });
    controller.setHostUrl("osc.udp://" + (o.bind == "0.0.0.0" ? std::string("localhost") : o.bind) + ":" + std::to_string(transport.udpPort()) + "/");
    // A lost device (JACK restarted, interface unplugged) falls back to the null driver and
    // comes back by itself; /notify clients hear `/driver state name detail`.
    DeviceSupervisor device(engine, d, std::move(driver), [&](const std::string& state, const std::string& name, const std::string& detail) {
        controller.setDriverInfo(name, period);
        controller.notifyAll(osc::MessageBuilder("/driver").s(state).s(name).s(detail));
    });

    // The session log (--session-log): from sample 0, before the audio starts.
    std::unique_ptr<SessionLog> sessionLog;
    if (!o.sessionLog.empty()) {
        SessionHeader h;
        h.argv = o.argv;
        h.cwd = currentDir();
        h.sampleRate = rate;
        h.blockSize = engine.config().blockSize;
        h.inputs = engine.config().numInputs;
        h.outputs = engine.config().numOutputs;
        h.roundTripLatency = ec.roundTripLatency;
        h.driver = driverName;
        h.started = utcNow();
        h.version = versionString();
        RecordSlot* inputTap = nullptr;
        try {
            sessionLog = std::make_unique<SessionLog>(o.sessionLog, h);
            if (h.inputs > 0) inputTap = recorder.open(sessionLog->inputPath(), -1, h.inputs, kNoClient, 8.0);
        } catch (const std::exception& e) {
            spdlog::critical("session log: {}", e.what());
            return 1;
        }
        engine.startSessionLog(inputTap);
        controller.setSessionLog(sessionLog.get());
        spdlog::info("session log: {} (replay it with loopd --replay {} out.wav)", o.sessionLog, o.sessionLog);
    }

    worker.start();
    recorder.start();
    stretchWorker.start(o.stretchThreads);
    try {
        device.start();
    } catch (const std::exception& e) {
        spdlog::critical("cannot start driver {}: {}", driverName, e.what());
        return 1;
    }
    // MIDI: JACK's ports came with the JACK driver; otherwise the ALSA sequencer's, where there is one.
    AlsaMidi alsaMidi;
    if (o.midi != "none" && !(driverName == "jack" && d.midiPorts)) {
        std::string why = o.midi == "jack" ? "--midi jack needs the JACK driver" : "";
        if (o.midi != "jack" && alsaMidi.open(engine, o.jackName, why)) spdlog::info("MIDI: ALSA sequencer ports {}:midi_in {}:midi_out", o.jackName, o.jackName);
        else spdlog::warn("MIDI off: no JACK MIDI and no ALSA sequencer ({})", why);
    }
    std::signal(SIGINT, onSignal);
    std::signal(SIGTERM, onSignal);
    // The startup actions first (the loops' memory is allocated here, which takes a while for
    // long loops): "ready" means a command sent now is served now, not after them.
    runStartupActions(o, controller);
    spdlog::info("loopd ready: OSC udp {}:{} tcp {}, driver {}, {} Hz, block {}, period {}, {} in / {} out{}",
                 o.bind, transport.udpPort(), transport.tcpPort(), driverName, rate, o.blockSize,
                 period, o.inputs, o.outputs, paths.roots().empty() ? ", file access unrestricted" : "");

    spdlog::info("memory budget {} ({} in use: rings and loops)", MemoryBudget::mb(controller.memoryBudget().limit()),
                 MemoryBudget::mb(controller.memoryBudget().used()));
    spdlog::info("looper: {} loop(s), {:.0f} s each (+{:.0f} s undo), input capture {:.0f} s, round-trip latency compensated {} frames",
                 o.loops, o.loopSeconds, o.undoSeconds, o.captureSeconds, ec.roundTripLatency);
    const auto handler = [&controller](const char* data, size_t size, const osc::Endpoint& from) {
        return controller.handlePacket(data, size, from);
    };
    // The control thread sleeps in poll(2) until a packet comes, the audio thread or a worker
    // queues something for it (the eventfd), or a module's next deadline (idleTimeoutMs).
    Wakeup& wake = engine.controlWake();
    transport.setWakeFd(wake.fd());
    while (!controller.quitRequested() && !g_signalled) {
        wake.arm(); // from here, anything queued posts the eventfd: the poll below returns at once
        controller.pollReplies();
        device.poll();
        transport.poll(controller.idleTimeoutMs(), handler);
        wake.disarm();
        for (uint64_t id : transport.takeClosed()) controller.forgetTcpClient(id);
    }
    spdlog::info("shutting down");
    if (sessionLog) sessionLog->shutdown(engine.sampleTime());
    // Close recordings cleanly: detach them on the audio thread, then let the recorder finish.
    controller.stopRecordings();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    const int kept = sessionLog && engine.config().numInputs > 0 ? 1 : 0; // the session's input stays open
    while (recorder.active() > kept && std::chrono::steady_clock::now() < deadline) {
        controller.pollReplies();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    device.stop();
    if (sessionLog) {
        controller.flushSessionLog();
        sessionLog->close(engine.sampleTime());
        engine.stopSessionLog(); // the recorder closes the input file below
        spdlog::info("session log closed at sample {} ({:.1f} s, {} bytes)", engine.sampleTime(),
                     static_cast<double>(engine.sampleTime()) / rate, sessionLog->bytes());
    }
    worker.stop();
    controller.pollReplies();
    stretchWorker.stop();
    recorder.stop();
    return 0;
}

int runNrt(const Options& o) {
    const std::string& inPath = o.nrt.at(1);
    const std::string& outPath = o.nrt.at(2);
    const double sr = o.sampleRate;
    NrtScore score;
    std::unique_ptr<BufferData> input;
    Options eo = o;
    try {
        score = NrtScore::read(o.nrt.at(0));
        if (inPath != "_") {
            LoadOptions lo;
            lo.targetRate = sr;
            input = loadAudioFile(inPath, lo);
            eo.inputs = input->numChannels;
        }
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
    FileConfig files;
    if (!loadFiles(o, files)) return 1;
    EngineConfig ec = engineConfig(eo, sr, false, files);
    ec.roundTripLatency = roundTrip(o, nullptr);
    // The driver hands the packets over block by block and the engine takes every command of a
    // block: the queues and the scheduler need room for the busiest block. An OSC message is at
    // least 8 bytes; room for two commands per 8 bytes and 4096 more, up to 65536 (once fixed:
    // 27 MB of queue slots written at start, a third of a short render's time).
    const size_t busiest = score.mostBytesInABlock(sr, ec.blockSize);
    const size_t room = std::min<size_t>(1 << 16, busiest / 4 + 4096);
    ec.commandQueueSize = std::max(ec.commandQueueSize, room);
    ec.maxCommandsPerBlock = 1 << 16;
    ec.schedulerCapacity = static_cast<int>(std::max<size_t>(static_cast<size_t>(ec.schedulerCapacity), room));
    Engine engine(ec);
    Worker worker(true);
    Recorder recorder(sr, true);
    PathPolicy paths(o.roots);
    Controller controller(engine, worker, recorder, paths, controllerOptions(o, true, files));
    controller.setDriverInfo("nrt", o.blockSize);
    controller.setSender([](const osc::Endpoint&, const char* data, size_t size) {
        try {
            ::osc::ReceivedMessage m(::osc::ReceivedPacket(data, static_cast<::osc::osc_bundle_element_size_t>(size)));
            if (std::strcmp(m.AddressPattern(), "/fail") == 0) {
                auto it = m.ArgumentsBegin();
                const std::string a = it->AsString();
                ++it;
                spdlog::warn("nrt: /fail {} {}", a, it->AsString());
            }
        } catch (...) {
        }
        return true;
    });
    const osc::Endpoint nowhere;
    std::unique_ptr<NrtDriver> driver;
    try {
        driver = std::make_unique<NrtDriver>(
            engine, input.get(), outPath, [&](const char* data, size_t size) { controller.handlePacket(data, size, nowhere); },
            [&] { controller.pollReplies(); recorder.drainAll(); });
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t frames = driver->render(score);
    // Close recordings made by the score.
    controller.stopRecordings();
    driver->flush([&] { controller.pollReplies(); });
    driver.reset();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double dur = static_cast<double>(frames) / sr;
    spdlog::info("nrt: rendered {} frames ({:.3f} s) in {:.3f} s ({:.1f}x real time), {} failed commands",
                 frames, dur, secs, secs > 0 ? dur / secs : 0.0, controller.failCount());
    return 0;
}

int runReplay(const Options& cmd) {
    namespace fs = std::filesystem;
    std::error_code ec0;
    const std::string dir = fs::absolute(cmd.replay.at(0), ec0).string();
    const std::string outPath = fs::absolute(cmd.replay.at(1), ec0).string();
    SessionRecording rec;
    try {
        rec = SessionRecording::read(dir);
    } catch (const std::exception& e) {
        spdlog::critical("replay: {}", e.what());
        return 1;
    }
    // The live server's own settings, from its command line; then what this one changes.
    Options o;
    {
        std::vector<std::string> args = rec.header.argv;
        if (args.empty()) args.push_back("loopd");
        std::vector<char*> av;
        for (auto& a : args) av.push_back(a.data());
        int code = 0;
        if (!parseCommandLine(static_cast<int>(av.size()), av.data(), o, code)) {
            spdlog::critical("replay: the live server's command line in {}/session.log does not parse here", dir);
            return 1;
        }
    }
    if (!rec.header.cwd.empty() && ::chdir(rec.header.cwd.c_str()) != 0)
        spdlog::warn("replay: cannot enter the live server's directory {} (relative paths may not resolve)", rec.header.cwd);
    if (cmd.stretchMethodSet) o.stretchMethod = cmd.stretchMethod;
    const double rate = cmd.sampleRateSet ? cmd.sampleRate : rec.header.sampleRate;
    o.blockSize = rec.header.blockSize;
    o.inputs = rec.header.inputs;
    o.outputs = rec.header.outputs;
    if (!rec.cut.empty()) spdlog::warn("replay: {}: {}", dir, rec.cut);
    if (rec.marksLost > 0) spdlog::warn("replay: {} block marks were lost live (the control thread stalled): the replay may differ after them", rec.marksLost);

    std::unique_ptr<BufferData> input;
    if (o.inputs > 0) {
        const std::string inPath = dir + "/input.w64";
        try {
            LoadOptions lo;
            lo.targetRate = rate;
            input = loadAudioFile(inPath, lo);
        } catch (const std::exception& e) {
            spdlog::warn("replay: no input ({}): the replay hears silence", e.what());
        }
    }
    FileConfig files;
    if (!loadFiles(o, files)) return 1;
    const double scale = rate / rec.header.sampleRate;
    EngineConfig ec = engineConfig(o, rate, true, files); // a real-time clock, fed from the log
    ec.roundTripLatency = static_cast<int>(std::lround(rec.header.roundTripLatency * scale));
    ec.stretchAhead = false;
    // Room for what the replay's control side makes ahead of the live timing (the limits decide
    // when the engine takes it).
    ec.commandQueueSize = std::max<size_t>(ec.commandQueueSize, 1 << 16);
    ec.maxCommandsPerBlock = 1 << 16;
    Engine engine(ec);
    Worker worker(true);
    Recorder recorder(rate, true);
    PathPolicy paths(o.roots);
    ControllerOptions co = controllerOptions(o, false, files);
    co.replay = true;
    co.replayFiles = outPath + ".files";
    co.generatorUrl.clear(); // what a generator answered live is not in the log
    fs::create_directories(co.replayFiles, ec0);
    Controller controller(engine, worker, recorder, paths, co);
    controller.setDriverInfo("replay", o.blockSize);
    controller.setSender([](const osc::Endpoint&, const char*, size_t) { return true; });
    std::unique_ptr<NrtDriver> driver;
    try {
        driver = std::make_unique<NrtDriver>(engine, input.get(), outPath, [](const char*, size_t) {},
                                             [&] { controller.pollReplies(); recorder.drainAll(); });
    } catch (const std::exception& e) {
        spdlog::critical("replay: {}", e.what());
        return 1;
    }
    runStartupActions(o, controller);
    ReplayFeed feed(rec, rate, ec.blockSize);
    size_t refused = 0, missingCompletions = 0;
    const auto act = [&](const SessionAction& a) {
        switch (a.kind) {
        case SessionAction::Kind::Packet:
            control_clock::holdAt(a.ntp, a.steady);
            if (!controller.handlePacket(a.bytes.data(), a.bytes.size(), a.from)) ++refused;
            control_clock::release();
            break;
        case SessionAction::Kind::Completion:
            control_clock::holdAt(a.ntp, a.steady);
            if (!controller.runCompletion(a.completion)) ++missingCompletions;
            control_clock::release();
            break;
        case SessionAction::Kind::TcpClosed: controller.forgetTcpClient(a.tcpId); break;
        case SessionAction::Kind::Shutdown: controller.stopRecordings(); break;
        }
    };
    const int64_t total = feed.endFrames(input ? input->numFrames : -1);
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t frames = driver->renderBlocks(total, [&](int64_t pos) { return pos < total && feed.before(engine, pos, act); },
                                                [&](int64_t pos) { feed.after(engine, pos); });
    controller.stopRecordings();
    driver->flush([&] { controller.pollReplies(); });
    driver.reset();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spdlog::info("replay: {} actions, {} frames ({:.3f} s at {} Hz{}) in {:.3f} s; files the session wrote are in {}",
                 feed.actionsRun(), frames, static_cast<double>(frames) / rate, rate,
                 o.stretchMethod != "rate" ? ", stretch " + o.stretchMethod : std::string(), secs, co.replayFiles);
    if (!rec.closed) spdlog::warn("replay: the log was cut off ({}): rendered up to sample {} ({:.3f} s), where it ends", rec.cut, frames, static_cast<double>(frames) / rate);
    if (refused > 0) spdlog::warn("replay: {} packets found the command queue full", refused);
    if (missingCompletions > 0) spdlog::warn("replay: {} completion messages had not finished when the live ones ran", missingCompletions);
    if (feed.divergedAt() >= 0) spdlog::warn("replay: differs from the live performance from sample {}: {}", feed.divergedAt(), feed.divergence());
    else if (scale == 1.0) spdlog::info("replay: every one of {} blocks that took commands took the same ones as live", feed.marksChecked());
    return 0;
}

} // namespace loopd
