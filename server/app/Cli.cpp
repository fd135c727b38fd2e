#include <CLI/CLI.hpp>

#include <iostream>

#include "server/app/Options.h"
#include "server/app/Version.h"

namespace loopd {

bool parseCommandLine(int argc, char** argv, Options& o, int& exitCode) {
    CLI::App app{"loopd: an OSC-controlled real-time audio server for live looping and tempo-following playback"};
    app.set_version_flag("--version", std::string("loopd ") + std::to_string(kVersionMajor) + "." +
                                          std::to_string(kVersionMinor) + "." + std::to_string(kVersionPatch) + " (" + kGitCommit + ")");
    app.add_option("-u,--port", o.udpPort, "UDP port for OSC (0 = any free port, -1 = none)")->capture_default_str();
    app.add_option("-t,--tcp-port", o.tcpPort, "TCP port for OSC (default: the UDP port number; -1 = none)");
    app.add_option("-B,--bind", o.bind, "address to listen on")->capture_default_str();
    app.add_option("-Z,--buffer-size", o.bufferSize, "device period in frames (presets: 256 desktop, 512 Pi 5, 1024 Pi 4)")
        ->capture_default_str()->check(CLI::Range(16, 8192));
    app.add_option("-z,--block-size", o.blockSize, "engine block size in frames")->capture_default_str()->check(CLI::Range(1, 4096));
    app.add_option("-S,--sample-rate", o.sampleRate, "sample rate (JACK imposes its own)")->capture_default_str()->check(CLI::Range(8000.0, 384000.0));
    app.add_option("--driver", o.driver, "auto, jack, alsa, pulse or null")->capture_default_str()
        ->check(CLI::IsMember({"auto", "jack", "alsa", "pulse", "null"}));
    app.add_option("--null-input", o.nullInput, "null driver: play this audio file, looped, as the input (tests, installations without a sound card)")->check(CLI::ExistingFile);
    app.add_option("-H,--device", o.device, "device index or part of its name");
    app.add_option("--jack-name", o.jackName, "JACK client name (give each loopd on one JACK server its own)")->capture_default_str();
    app.add_option("-i,--inputs", o.inputs, "input channels")->capture_default_str()->check(CLI::Range(0, 32));
    app.add_option("-o,--outputs", o.outputs, "output channels")->capture_default_str()->check(CLI::Range(1, 32));
    app.add_option("--root", o.roots, "directories file commands may read and write (repeatable; default: anywhere)");
    app.add_option("--bpm", o.bpm, "initial tempo")->capture_default_str()->check(CLI::Range(20.0, 400.0));
    app.add_option("--meter", o.meter, "beats per bar")->capture_default_str()->check(CLI::Range(1, 32));
    app.add_option("--bpm-range", o.bpmRange, "LO HI: tempo estimates (analysis) are folded into this range (default 70 180)")
        ->expected(2)->check(CLI::Range(20.0, 400.0));
    app.add_option("--log-level", o.logLevel, "trace, debug, info, warn, error, off")->capture_default_str()
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
    app.add_option("--command-queue", o.commandQueue, "capacity of the control→audio command queue")->capture_default_str()->check(CLI::Range(4, 1 << 20));
    app.add_option("--max-buffer-mb", o.maxBufferMb, "largest buffer one file may load into, in MiB of float samples")->capture_default_str()->check(CLI::Range(1, 1 << 20));
    app.add_option("--max-memory-mb", o.maxMemoryMb, "memory budget over buffers, loops, undo history and stretch voices, in MiB (0: half the machine's RAM)")
        ->capture_default_str()->check(CLI::Range(0, 1 << 24));
    app.add_option("--limiter-ceiling", o.limiterCeilingDb, "master limiter ceiling in dBFS")->capture_default_str()->check(CLI::Range(-40.0, 0.0));
    app.add_option("--declick-ms", o.declickMs, "start/stop fade time in milliseconds")->capture_default_str()->check(CLI::Range(0.0, 1000.0));
    app.add_option("--cue-out", o.cueOut, "first channel of a stereo cue/headphone pair fed pre-fader by groups with cue 1 (needs --outputs >= 4)")
        ->check(CLI::Range(0, 30));
    app.add_option("--loops", o.loops, "loops created at startup (SooperLooper's --loopcount)")->capture_default_str()->check(CLI::Range(0, 64));
    app.add_option("--loop-seconds", o.loopSeconds, "memory per loop in seconds (SooperLooper's --looptime)")->capture_default_str()->check(CLI::Range(1.0, 3600.0));
    app.add_option("--undo-seconds", o.undoSeconds, "extra memory per loop for undo history, in seconds")->capture_default_str()->check(CLI::Range(0.0, 3600.0));
    app.add_option("--capture-seconds", o.captureSeconds, "always-on input history for /sl/#/hit capture, in seconds")->capture_default_str()->check(CLI::Range(1.0, 3600.0));
    app.add_option("--input-latency", o.inputLatency, "input latency in frames that loops compensate (default: the driver's figure)")->check(CLI::Range(0, 8192));
    app.add_option("--output-latency", o.outputLatency, "output latency in frames that loops compensate (default: the driver's figure)")->check(CLI::Range(0, 8192));
    app.add_flag("--pa-mute", o.paMute, "mute the main outputs while a loop records (the --cue-out pair keeps the whole mix)");
    app.add_option("--nrt", o.nrt, "offline render: SCORE INPUT(or _) OUTPUT")->expected(3);
    app.add_option("--session-log", o.sessionLog, "keep every packet, with the sample it took effect at, and the input in this directory (for --replay)");
    app.add_option("--replay", o.replay, "render a session log offline: DIR OUTPUT (with --stretch-method or --sample-rate: a better render of the same performance)")->expected(2);
    app.add_option("--config", o.config, "JSON configuration (bpm, meter, movement map; see docs/OSC.md)")->check(CLI::ExistingFile);
    app.add_option("--bpm-config", o.bpmConfig, "Crowdstream bpm_config.json (movement_bpm)")->check(CLI::ExistingFile);
    app.add_option("--midi-bindings", o.midiBindings, "SooperLooper .slb MIDI bindings to load at start")->check(CLI::ExistingFile);
    app.add_option("--midi", o.midi, "MIDI ports: auto (loopd:midi_in/midi_out on JACK, else ALSA sequencer ports), jack, alsa, none")
        ->check(CLI::IsMember({"auto", "jack", "alsa", "none"}))->capture_default_str();
    app.add_option("--bank", o.bank, "the loop bank: a directory of loops with JSON sidecars (/bank_save, /bank_list, /bank_load)");
    app.add_option("--project", o.project, "load this project directory at start (/project_load; /project_save writes one)");
    app.add_option("--generator", o.generator, "a stable-audio-style loop generator (http://host:port): /generate");
    app.add_option("--generator-timeout", o.generatorTimeout, "seconds a generation may take")->capture_default_str()->check(CLI::Range(1.0, 3600.0));
    app.add_option("--jam-token", o.jamToken, "interval jam: a token every HTTP request must carry (hosting), or that this server sends (joining)");
    app.add_option("--jam-bind", o.jamBind, "interval jam: the address /jam_host listens on (0.0.0.0: every interface)")->capture_default_str();
    app.add_flag("--link", o.link, "join the Ableton Link session on the network at start (tempo and phase shared with every Link peer; /link 0 leaves)");
    app.add_flag("--midi-clock-out", o.midiClockOut, "send MIDI clock (24 per beat, Start on the next bar) on the MIDI output from the start");
    // The Crowdstream server's flags.
    app.add_option("--a", o.deck[0], "load and start a file on deck A (buffer 100)");
    app.add_option("--b", o.deck[1], "load and start a file on deck B (buffer 1100)");
    app.add_option("--c", o.deck[2], "load a file on deck C (buffer 2100); starts now, or after --c_at");
    app.add_option("--d", o.deck[3], "load and start a file on deck D (buffer 3100)");
    app.add_option("--c_at", o.cAt, "start deck C this many seconds after startup")->check(CLI::Range(0.0, 86400.0));
    app.add_option("--c_preload", o.cPreload, "load a file on deck C without starting it");
    app.add_option("--rate", o.rate, "playback rate of the decks started by --a..--d")->capture_default_str()->check(CLI::Range(0.01, 64.0));
    app.add_option("--vol", o.vol, "volume of the decks started by --a..--d")->capture_default_str()->check(CLI::Range(0.0, 4.0));
    app.add_option("--ab", o.ab, "initial levels of decks A and B")->expected(2);
    app.add_option("--levels", o.levels, "initial levels of decks A, B, C, D")->expected(4);
    app.add_flag("--watch", o.watch, "print a clock line per beat (as /print_clock 1)");
    app.add_flag("--enable-filters{true},--disable-filters{false}", o.enableFilters, "deck EQ on (default) or bypassed");
    bool optimized = false;
    app.add_flag("--optimized-filters", optimized, "accepted for compatibility (the EQ is always native code)");
    app.add_flag("--disable-time-stretch", o.disableTimeStretch, "players do not follow the tempo clock");
    app.add_option("--stretch-method", o.stretchMethod, "tempo following method: rate/playback_rate (varispeed); rb2, rb3, wsola, pyrubberband, audiotsm are accepted")
        ->capture_default_str()->check(CLI::IsMember({"rate", "playback_rate", "rb2", "rb3", "wsola", "pyrubberband", "audiotsm"}));
    app.add_option("--stretch-threads", o.stretchThreads, "threads that render stretched players ahead (0: one per core but one)")
        ->capture_default_str()->check(CLI::Range(0, 64));
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        exitCode = app.exit(e);
        return false;
    }
    o.stretchMethodSet = app.count("--stretch-method") > 0;
    o.sampleRateSet = app.count("--sample-rate") > 0;
    o.argv.assign(argv, argv + argc);
    return true;
}

} // namespace loopd
