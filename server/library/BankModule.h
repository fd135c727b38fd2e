#pragma once
// The loop bank's commands (SPEC 4.10; library/Bank.h on disk):
//   /bank_save name source [tags...]   source: a buffer number, or `sl:N` (loop N's content);
//                                      saved with the clock's tempo and meter (a buffer's analysed
//                                      tempo when /b_analyze found one) and its bars; /done /bank_save name
//   /bank_list [bpm [tolerance]]       /bank_list.reply name bpm bars key (repeated): every loop by
//                                      name, or those within tolerance (default 2) of bpm, nearest first
//   /bank_load name target [when]      target `sl:N` or `buf:N`; when `now|beat|bar|cycle` (default
//                                      bar; a buffer has no cycle): loaded on the worker, stretched
//                                      offline (Rubber Band R3) to exactly its bars at the clock's
//                                      tempo when its bpm differs, swapped in on time (a loop with its
//                                      crossfade); /done /bank_load name when queued
//   /generate name prompt [bars loopType seed target]   (--generator URL, library/Generator.h)
//                                      a loop from the generator backend: `bars` (default 4) at the
//                                      clock's tempo, saved in the bank as `name`, and with a target
//                                      (`sl:N`, `buf:N`) swapped in at the next bar (a buffer: at
//                                      once); `/progress /generate name seconds` every second while
//                                      the backend works, then /done /generate name, or /fail
//                                      /generate with the backend's words (down, slow past
//                                      --generator-timeout, an error, not audio)
// Without --bank DIR every command answers /fail.
//
// Threads: handlers on the control thread; file work and stretching on the worker.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/control/Module.h"

namespace loopd {
class Buffers;
class SooperLooper;
namespace library { class Bank; class Generator; struct BankEntry; }

class BankModule final : public Module {
public:
    BankModule(Controller& c, Buffers& buffers, SooperLooper& sl);
    ~BankModule() override;
    bool takeBack(Released& x) override;
    void poll() override;
    int pollWithinMs() const override { return generator_ ? 20 : -1; } // progress and results from its thread

private:
    void hSave(Msg&); void hList(Msg&); void hLoad(Msg&); void hGenerate(Msg&);
    library::Bank& bank(); // throws osc::ArgError without --bank
    struct Target { bool loop = false; int index = -1; int32_t node = -1; int32_t buffer = -1; };
    Target target(Msg& m, const std::string& what);

    Buffers& buffers_;
    SooperLooper& sl_;
    std::shared_ptr<library::Bank> bank_;
    std::unique_ptr<library::Generator> generator_;
    double lastProgress_ = 0.0;
    // [worker] Save into the bank; false: /fail `address` went to the client.
    bool saveFromWorker(library::Bank& bank, uint16_t client, const char* address, library::BankEntry e, const BufferData& audio);
    // [worker] Swap `data` into `t` (a loop at `at`, a buffer at once); /done `address` name.
    void placeFromWorker(uint16_t client, const char* address, const std::string& name, Target t, int at, std::unique_ptr<BufferData> data);
    struct PendingSave { std::string name; std::vector<std::string> tags; double bpm; int beatsPerBar; uint16_t client; };
    std::map<const BufferData*, PendingSave> saves_; // loop copies lent to loopers
};

} // namespace loopd
