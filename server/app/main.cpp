// loopd's entry point: flags → logging → real-time server or offline render.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <string_view>

#include "server/app/Options.h"

int main(int argc, char** argv) {
    if (argc > 1 && std::string_view(argv[1]) == "sections") return loopd::runSections(argc - 1, argv + 1);
    loopd::Options options;
    int exitCode = 0;
    if (!loopd::parseCommandLine(argc, argv, options, exitCode)) return exitCode;
    auto logger = spdlog::stderr_color_mt("loopd");
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
    spdlog::set_level(spdlog::level::from_str(options.logLevel));
    try {
        if (!options.replay.empty()) return loopd::runReplay(options);
        return options.nrt.empty() ? loopd::runServer(options) : loopd::runNrt(options);
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
}
