#pragma once
// Everything the command line sets (see Cli.cpp for the flags and their defaults).
#include <string>
#include <vector>

namespace loopd {

struct Options {
    int udpPort = 57120;
    int tcpPort = -2;                 // -2: same number as the UDP port; -1: off
    std::string bind = "127.0.0.1";
    int bufferSize = 256;             // device period in frames
    int blockSize = 64;               // engine block in frames
    double sampleRate = 48000.0;
    std::string driver = "auto";
    std::string nullInput;            // null driver: the input is this file, looped (tests, demos)
    std::string device;
    std::string jackName = "loopd";   // JACK client name
    int inputs = 2;
    int outputs = 2;
    std::vector<std::string> roots;
    double bpm = 120.0;
    int meter = 4;
    std::vector<double> bpmRange;     // --bpm-range LO HI (tempo estimates are folded into it)
    std::string logLevel = "info";
    int commandQueue = 4096;
    int maxBufferMb = 2048;
    int maxMemoryMb = 0;              // memory budget; 0: half the physical RAM
    float limiterCeilingDb = -0.3f;
    double declickMs = 5.0;
    std::vector<std::string> nrt;     // SCORE IN OUT
    std::string sessionLog;           // --session-log DIR: keep the performance for --replay
    std::vector<std::string> replay;  // --replay DIR OUT: render a session log offline
    bool stretchMethodSet = false;    // --stretch-method / --sample-rate were given (a replay
    bool sampleRateSet = false;       //   keeps the live server's otherwise)
    std::vector<std::string> argv;    // the command line as given (the session log keeps it)
    // Configuration files and the Crowdstream server's flags.
    std::string config;               // loopd JSON
    std::string bpmConfig;            // Crowdstream bpm_config.json
    std::string midiBindings;         // SooperLooper .slb file loaded at start
    std::string midi = "auto";        // MIDI ports: auto (JACK's beside the audio, else ALSA's), jack, alsa, none
    std::string bank;                 // the loop bank's directory
    std::string project;              // --project DIR: loaded at start (/project_load)
    std::string generator;            // the loop generator's URL
    double generatorTimeout = 120.0;  // seconds a generation may take
    std::string jamToken;             // the interval jam's HTTP token (hosting and joining)
    std::string jamBind = "127.0.0.1"; // the address /jam_host listens on
    bool link = false;                // join the Ableton Link session at start (/link 1)
    bool midiClockOut = false;        // MIDI clock out from the start (/set output_midi_clock 1)
    std::string deck[4];              // --a --b --c --d: preload and start
    double cAt = -1.0;                // --c_at: start deck C after this many seconds
    std::string cPreload;             // --c_preload: load deck C without starting it
    double rate = 1.0, vol = 0.8;     // autoplay rate and volume
    std::vector<double> ab, levels;   // --ab A B, --levels A B C D
    bool watch = false;
    bool enableFilters = true;
    bool disableTimeStretch = false;
    std::string stretchMethod = "rate";
    int stretchThreads = 0;           // stretch worker threads (0: one per core but one)
    int cueOut = -1;                  // first channel of the cue/headphone pair (-1: none)
    // Looper.
    int loops = 1;                    // loops created at startup (SooperLooper's --loopcount)
    double loopSeconds = 40.0;        // memory per loop (SooperLooper's --looptime)
    double undoSeconds = 40.0;        // extra memory per loop for undo history
    double captureSeconds = 60.0;     // always-on input history
    int inputLatency = -1;            // frames; -1: what the driver reports
    int outputLatency = -1;
    bool paMute = false;              // mute the main outputs while a loop records
};

// [control] Parses argv; on --help/--version/errors prints and returns false with exitCode set.
bool parseCommandLine(int argc, char** argv, Options& options, int& exitCode);

// [control] Run the real-time server until /quit or a signal; returns the exit code.
int runServer(const Options& options);
// [control] Offline render of an OSC score (scsynth -N format); returns the exit code.
int runNrt(const Options& options);
// `loopd sections ...` (argv[0] is "sections"): Crowdstream's section exporter; the exit code.
int runSections(int argc, char** argv);
// [control] Offline render of a session log (--replay DIR OUT); returns the exit code.
int runReplay(const Options& options);

} // namespace loopd
