#pragma once
// What the OSC front end is configured with (from the command line and the config file): the
// clock's start, the driver it reports, limits, the movement mapping, the stretch default, the
// loop memory and the memory budget. Set once before the Controller is built; read-only after.
#include <cstdint>
#include <string>

#include "server/control/Movement.h"
#include "server/engine/MemoryBudget.h"

namespace loopd {

struct ControllerOptions {
    double bpm = 120.0;
    int beatsPerBar = 4;
    std::string driverName = "none";
    int periodFrames = 0;
    int64_t maxBufferSamples = int64_t(512) << 20; // floats per buffer (2 GiB)
    bool offline = false;
    MovementConfig movement;
    bool followTempo = true;      // false: --disable-time-stretch
    std::string stretchMethod = "rate";
    float stemMasterGain = 0.8f;  // the Crowdstream server's master volume
    AnalysisConfig analysis;      // the analysis tempo source (--bpm-range, the config's "analysis")
    double loopSeconds = 40.0;    // loop memory per loop (SooperLooper's -t default)
    double undoSeconds = 40.0;    // extra memory per loop for undo history
    double captureSeconds = 60.0; // the always-on input history (a jam take comes from it)
    std::string bankDir;          // --bank: the loop bank's directory ("" none)
    std::string generatorUrl;     // --generator: a stable-audio-style backend ("" none)
    double generatorTimeout = 120.0; // --generator-timeout, seconds
    std::string jamToken;         // --jam-token: what a jam's HTTP requests must carry ("" none)
    std::string jamBind = "127.0.0.1"; // --jam-bind: where /jam_host listens
    // A replay of a session log (--replay): completion messages run when the log says they ran
    // (Controller::runCompletion), and every file a command writes goes into `replayFiles`
    // instead of where the live server wrote it (nothing of the performance is overwritten).
    bool replay = false;
    std::string replayFiles;
    // The memory budget over buffers, loops, undo history and stretch voices (--max-memory-mb).
    int64_t maxMemoryBytes = MemoryBudget::halfOfPhysicalMemory();
};

} // namespace loopd
