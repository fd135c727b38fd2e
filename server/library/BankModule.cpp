// The loop bank's commands (BankModule.h).
#include "server/library/BankModule.h"
#include "server/analysis/MaterialAnalysis.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "server/compat/sooperlooper/SooperLooper.h"
#include "server/control/Buffers.h"
#include "server/engine/BufferData.h"
#include "server/io/AudioFile.h"
#include "server/library/Bank.h"
#include "server/library/Generator.h"
#include "server/library/LoopFit.h"
#include "server/nodes/looper/Looper.h"

namespace loopd {

namespace {
constexpr const char* kSave = "/bank_save";
constexpr const char* kLoad = "/bank_load";
constexpr const char* kGenerate = "/generate";
} // namespace

BankModule::BankModule(Controller& c, Buffers& buffers, SooperLooper& sl) : Module(c), buffers_(buffers), sl_(sl) {
    on("/bank_save", &BankModule::hSave);
    on("/bank_list", &BankModule::hList);
    on("/bank_load", &BankModule::hLoad);
    on("/generate", &BankModule::hGenerate);
    if (!options_.generatorUrl.empty()) {
        library::Generator::Config g;
        g.url = options_.generatorUrl;
        g.timeoutSeconds = options_.generatorTimeout;
        generator_ = std::make_unique<library::Generator>(g);
        spdlog::info("loop generator: {} (timeout {} s)", g.url, g.timeoutSeconds);
    }
    if (!options_.bankDir.empty()) {
        try {
            bank_ = std::make_shared<library::Bank>(options_.bankDir);
            spdlog::info("loop bank: {}", options_.bankDir);
        } catch (const std::exception& e) {
            spdlog::error("{}", e.what());
        }
    }
}

BankModule::~BankModule() = default;

library::Bank& BankModule::bank() {
    if (!bank_) throw osc::ArgError(options_.bankDir.empty() ? "no loop bank (start with --bank DIR)" : "the bank " + options_.bankDir + " could not be opened");
    return *bank_;
}

BankModule::Target BankModule::target(Msg& m, const std::string& what) {
    Target t;
    std::string s = m.args.isString() ? m.args.string(what.c_str()) : std::to_string(m.args.int32(what.c_str()));
    auto number = [&](const std::string& digits) {
        if (digits.empty() || digits.size() > 6 || !std::all_of(digits.begin(), digits.end(), ::isdigit))
            throw osc::ArgError(what + " must be a buffer number, buf:N or sl:N, got '" + s + "'");
        return std::stoi(digits);
    };
    if (s.rfind("sl:", 0) == 0) {
        t.loop = true;
        t.index = number(s.substr(3));
        t.node = sl_.nodeOfIndex(t.index);
        if (t.node < 0) throw osc::ArgError("there is no loop " + std::to_string(t.index));
    } else {
        t.buffer = number(s.rfind("buf:", 0) == 0 ? s.substr(4) : s);
    }
    return t;
}

void BankModule::hSave(Msg& m) {
    const std::string name = m.args.string("bank name");
    bank();
    if (!library::Bank::validName(name)) throw osc::ArgError("'" + name + "' is not a bank name (1-64 letters, digits, ' ', '_', '-', '.')");
    const Target t = target(m, "source");
    std::vector<std::string> tags;
    while (!m.args.atEnd()) tags.push_back(m.args.string("tag"));
    const double bpm = engine_.stats().bpm;
    const int bpb = engine_.stats().beatsPerBar;
    if (t.loop) {
        Looper* looper = sl_.looperOfNode(t.node);
        const int64_t frames = looper ? looper->status().loopFrames.load() : 0;
        if (frames <= 0) throw osc::ArgError("loop " + std::to_string(t.index) + " is empty");
        auto data = BufferData::zeros(frames, looper->channels(), engine_.config().sampleRate, &budget(), "a loop for the bank");
        BufferData* raw = data.get();
        if (!push(m, Looper::saveFor(t.node, raw))) return;
        data.release();
        saves_[raw] = PendingSave{name, tags, bpm, bpb, m.client};
        return; // written when the looper hands the copy back (takeBack)
    }
    if (!buffers_.bufferKnown(t.buffer)) throw osc::ArgError("buffer " + std::to_string(t.buffer) + " holds nothing");
    const uint16_t client = m.client;
    const int32_t buf = t.buffer;
    std::shared_ptr<library::Bank> bankRef = bank_;
    worker_.post([this, bankRef, client, name, tags, bpm, bpb, buf] {
        const BufferData* d = buffers_.workerBuffer(buf); // stays while this job runs (the worker's jobs run one by one)
        if (!d || d->numFrames <= 0) { fail(client, kSave, "buffer " + std::to_string(buf) + " holds nothing"); return; }
        const double analysed = d->analysedBpm.load();
        const double tempo = analysed > 0.0f ? analysed : bpm;
        if (saveFromWorker(*bankRef, client, kSave, {name, tempo, library::barsOf(d->numFrames, tempo, bpb, d->sampleRate), bpb, "", tags}, *d))
            send(client, osc::MessageBuilder("/done").s(kSave).s(name));
    });
}

bool BankModule::takeBack(Released& x) {
    if (x.what != Released::What::LoopSave) return false;
    auto it = saves_.find(static_cast<const BufferData*>(x.ptr));
    if (it == saves_.end()) return false;
    PendingSave p = it->second;
    saves_.erase(it);
    auto* raw = static_cast<BufferData*>(x.ptr);
    if (raw->numFrames <= 0) { delete raw; fail(p.client, kSave, "the loop could not be copied"); return true; }
    std::shared_ptr<library::Bank> bankRef = bank_;
    worker_.post([this, bankRef, raw, p] {
        std::unique_ptr<BufferData> d(raw);
        if (saveFromWorker(*bankRef, p.client, kSave, {p.name, p.bpm, library::barsOf(d->numFrames, p.bpm, p.beatsPerBar, d->sampleRate), p.beatsPerBar, "", p.tags}, *d))
            send(p.client, osc::MessageBuilder("/done").s(kSave).s(p.name));
    });
    return true;
}

void BankModule::hList(Msg& m) {
    const float bpm = m.args.atEnd() ? 0.0f : m.args.number("bpm");
    const float tolerance = m.args.atEnd() ? 2.0f : m.args.number("tolerance");
    m.args.expectEnd();
    bank();
    if (bpm < 0.0f || tolerance < 0.0f) throw osc::ArgError("bpm and tolerance must not be negative");
    const uint16_t client = m.client;
    std::shared_ptr<library::Bank> bankRef = bank_;
    worker_.post([this, bankRef, client, bpm, tolerance] {
        std::vector<library::BankEntry> all = bankRef->list();
        if (bpm > 0.0f) {
            all.erase(std::remove_if(all.begin(), all.end(), [&](const library::BankEntry& e) { return std::fabs(e.bpm - bpm) > tolerance; }), all.end());
            std::stable_sort(all.begin(), all.end(), [&](const library::BankEntry& a, const library::BankEntry& b) {
                return std::fabs(a.bpm - bpm) < std::fabs(b.bpm - bpm);
            });
        }
        osc::MessageBuilder r("/bank_list.reply");
        for (const auto& e : all) r.s(e.name).f(static_cast<float>(e.bpm)).i(e.bars).s(e.key);
        send(client, r);
    });
}

void BankModule::hLoad(Msg& m) {
    const std::string name = m.args.string("bank name");
    bank();
    if (!library::Bank::validName(name)) throw osc::ArgError("'" + name + "' is not a bank name");
    const Target t = target(m, "target");
    const std::string when = m.args.atEnd() ? "bar" : m.args.string("when (now, beat, bar or cycle)");
    m.args.expectEnd();
    Looper::LoadAt at = Looper::LoadAt::Bar;
    if (when == "now") at = Looper::LoadAt::Now;
    else if (when == "beat") at = Looper::LoadAt::Beat;
    else if (when == "bar") at = Looper::LoadAt::Bar;
    else if (when == "cycle") at = Looper::LoadAt::Wrap;
    else throw osc::ArgError("when must be now, beat, bar or cycle, got '" + when + "'");
    if (!t.loop && at == Looper::LoadAt::Wrap) throw osc::ArgError("a buffer has no cycle: when must be now, beat or bar (cycle is a loop's, sl:N)");
    const double clockBpm = engine_.stats().bpm;
    const double sr = engine_.config().sampleRate;
    const uint16_t client = m.client;
    LoadOptions lo = loadOptions("a loop from the bank");
    std::shared_ptr<library::Bank> bankRef = bank_;
    worker_.post([this, bankRef, client, name, t, at, clockBpm, sr, lo] {
        std::unique_ptr<BufferData> data;
        try {
            const library::BankEntry e = bankRef->entry(name);
            std::unique_ptr<BufferData> audio = loadAudioFile(bankRef->audioPath(name), lo);
            const int64_t frames = library::framesOfBars(e.bars, e.beatsPerBar, clockBpm, sr);
            if (audio->numFrames == frames) {
                data = std::move(audio);
            } else {
                // Exactly its bars at the clock's tempo, pitch kept (R3: the best Rubber Band has).
                data = library::fitLoop(*audio, frames, stretch::Method::Rb3);
                spdlog::info("bank: '{}' ({} BPM, {} bars) fitted to {} frames at {} BPM", name, e.bpm, e.bars, frames, clockBpm);
            }
        } catch (const std::exception& ex) {
            fail(client, kLoad, ex.what());
            return;
        }
        placeFromWorker(client, kLoad, name, t, static_cast<int>(at), std::move(data));
    });
}

bool BankModule::saveFromWorker(library::Bank& bank, uint16_t client, const char* address, library::BankEntry e, const BufferData& audio) {
    // A replay never writes into the bank the performance used (its loops are already there).
    if (options_.replay) return true;
    if (e.key.empty() && audio.numFrames > 0) {
        // The key of the loop (qm-dsp's chroma against key profiles), "" when it is unsure.
        std::vector<float> mono(static_cast<size_t>(audio.numFrames), 0.0f);
        for (int c = 0; c < audio.numChannels; ++c) {
            const float* x = audio.channel(c);
            for (int64_t i = 0; i < audio.numFrames; ++i) mono[static_cast<size_t>(i)] += x[i] / static_cast<float>(audio.numChannels);
        }
        e.key = analyseMaterial(mono, audio.sampleRate, options_.analysis.bpmLow, options_.analysis.bpmHigh, e.beatsPerBar).key;
    }
    try {
        bank.save(std::move(e), audio);
        return true;
    } catch (const std::exception& ex) {
        fail(client, address, ex.what());
        return false;
    }
}

void BankModule::placeFromWorker(uint16_t client, const char* address, const std::string& name, Target t, int at, std::unique_ptr<BufferData> data) {
    if (t.loop) {
        BufferData* raw = data.get();
        if (!pushFromWorker(client, address, 0, Looper::loadAtFor(t.node, raw, static_cast<Looper::LoadAt>(at)))) return;
        data.release();
    } else if (t.buffer >= 0) {
        const auto when = static_cast<Looper::LoadAt>(at);
        buffers_.swapBuffer(client, address, t.buffer, std::move(data), 0, false,
                            when == Looper::LoadAt::Bar ? 2 : when == Looper::LoadAt::Beat ? 1 : 0);
    }
    send(client, osc::MessageBuilder("/done").s(address).s(name));
}

void BankModule::hGenerate(Msg& m) {
    const std::string name = m.args.string("bank name");
    const std::string prompt = m.args.string("prompt");
    const int32_t bars = m.args.atEnd() ? 4 : m.args.int32("bars");
    const std::string loopType = m.args.atEnd() ? "drums" : m.args.string("loop type");
    const int32_t seed = m.args.atEnd() ? -1 : m.args.int32("seed");
    Target t;
    if (!m.args.atEnd()) t = target(m, "target");
    m.args.expectEnd();
    if (!generator_) throw osc::ArgError("no loop generator (start with --generator URL)");
    bank();
    if (!library::Bank::validName(name)) throw osc::ArgError("'" + name + "' is not a bank name");
    if (bars < 1 || bars > 64) throw osc::ArgError("bars must be 1..64, got " + std::to_string(bars));
    if (prompt.empty() || prompt.size() > 2000) throw osc::ArgError("the prompt must be 1 to 2000 characters");
    library::Generator::Request r;
    r.name = name;
    r.prompt = prompt;
    r.loopType = loopType;
    r.bars = bars;
    r.seed = seed;
    r.bpm = engine_.stats().bpm;
    r.beatsPerBar = engine_.stats().beatsPerBar;
    r.sampleRate = engine_.config().sampleRate;
    r.client = m.client;
    r.target = t.loop ? "sl:" + std::to_string(t.index) : t.buffer >= 0 ? "buf:" + std::to_string(t.buffer) : "";
    generator_->submit(std::move(r));
}

void BankModule::poll() {
    if (!generator_) return;
    const auto [name, seconds] = generator_->current();
    if (!name.empty() && seconds - lastProgress_ >= 1.0) {
        lastProgress_ = std::floor(seconds);
        broadcast(osc::MessageBuilder("/progress").s(kGenerate).s(name).f(static_cast<float>(lastProgress_)));
    }
    if (name.empty()) lastProgress_ = 0.0;
    for (auto& res : generator_->takeResults()) {
        const library::Generator::Request& r = res.request;
        if (!res.audio) {
            spdlog::warn("generate '{}': {}", r.name, res.error);
            fail(r.client, kGenerate, res.error);
            continue;
        }
        Target t;
        if (r.target.rfind("sl:", 0) == 0) {
            t.loop = true;
            t.index = std::stoi(r.target.substr(3));
            t.node = sl_.nodeOfIndex(t.index);
            if (t.node < 0) { fail(r.client, kGenerate, "loop " + std::to_string(t.index) + " is gone"); continue; }
        } else if (r.target.rfind("buf:", 0) == 0) {
            t.buffer = std::stoi(r.target.substr(4));
        }
        spdlog::info("generate '{}': {} frames after {:.1f} s", r.name, res.audio->numFrames, res.seconds);
        BufferData* raw = res.audio.release();
        std::shared_ptr<library::Bank> bankRef = bank_;
        worker_.post([this, bankRef, raw, r, t] {
            std::unique_ptr<BufferData> d(raw);
            if (!saveFromWorker(*bankRef, r.client, kGenerate, {r.name, r.bpm, r.bars, r.beatsPerBar, "", {"generated", r.loopType}}, *d)) return;
            if (t.loop || t.buffer >= 0) placeFromWorker(r.client, kGenerate, r.name, t, static_cast<int>(Looper::LoadAt::Bar), std::move(d));
            else send(r.client, osc::MessageBuilder("/done").s(kGenerate).s(r.name));
        });
    }
}

} // namespace loopd
