// The analysis module (AnalysisModule.h).
#include "server/analysis/AnalysisModule.h"

#include <string>

#include <cmath>

#include "server/control/Buffers.h"
#include "server/engine/BufferData.h"
#include "server/tempo/TempoCommands.h"

namespace loopd {

AnalysisModule::AnalysisModule(Controller& c, TempoCommands& tempo, Buffers& buffers)
    : Module(c), tempo_(tempo), buffers_(buffers), jobs_(options_.offline || options_.replay) {
    on("/analysis_input", &AnalysisModule::hAnalysisInput);
    on("/analysis/bpm", &AnalysisModule::hOutsideBpm);
    on("/b_analyze", &AnalysisModule::hBAnalyze);
    on("/b_beats", &AnalysisModule::hBBeats);
    if (!options_.offline && !options_.replay) jobs_.start();
    live_ = std::make_unique<LiveAnalysis>(engine_, options_.analysis.bpmLow, options_.analysis.bpmHigh, options_.analysis.restInSilence);
    if (!options_.offline && !options_.replay) live_->start();
}

AnalysisModule::~AnalysisModule() {
    live_->stop();
    jobs_.stop();
}

void AnalysisModule::poll() {
    if (options_.offline || options_.replay) live_->step();
    std::vector<Done> finished;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        finished.swap(finished_);
    }
    for (Done& d : finished) {
        if (d.silent) { fail(d.client, "/b_analyze", "buffer " + std::to_string(d.b) + " is silent: no tempo, beat or key to find"); continue; }
        // On the worker, in order with the buffer commands: the result goes with the data it was
        // made from (if that is still the buffer's), then the reply.
        worker_.post([this, d = std::move(d)]() mutable {
            BufferData* cur = buffers_.workerBuffer(d.b);
            if (cur && cur->serial == d.serial) {
                cur->analysedBpm.store(static_cast<float>(d.result.bpm), std::memory_order_relaxed);
                cur->analysedDownbeat.store(d.result.firstDownbeat, std::memory_order_relaxed);
            }
            {
                std::lock_guard<std::mutex> lock(mutex_);
                cache_[d.b] = {d.serial, d.result};
            }
            answerFromCache(d.client, d.b, d.serial);
        });
    }
    for (const LiveAnalysis::Event& e : live_->takeEvents()) {
        if (e.kind == LiveAnalysis::Event::Kind::Onset) {
            engine_.noteOnset(e.sampleTime);
            broadcast(osc::MessageBuilder("/onset").d(static_cast<double>(e.sampleTime)).f(static_cast<float>(e.value)));
        }
        else {
            if (e.changed)
                broadcast(osc::MessageBuilder("/tempo_estimate").f(static_cast<float>(e.value)).f(static_cast<float>(e.confidence))
                              .d(static_cast<double>(e.sampleTime)));
            tempo_.estimate(e.value, e.confidence, e.beatSample);
        }
    }
}

void AnalysisModule::hOutsideBpm(Msg& m) {
    const float bpm = m.args.number("bpm");
    const float confidence = m.args.atEnd() ? 1.0f : m.args.number("confidence");
    m.args.expectEnd();
    if (!(bpm >= 20.0f && bpm <= 400.0f)) throw osc::ArgError("bpm must be 20..400, got " + std::to_string(bpm));
    if (!(confidence >= 0.0f && confidence <= 1.0f)) throw osc::ArgError("confidence must be 0..1, got " + std::to_string(confidence));
    tempo_.estimate(TempoTracker::fold(bpm, options_.analysis.bpmLow, options_.analysis.bpmHigh), confidence, -1.0);
    done(m.client, m.address);
}

void AnalysisModule::hAnalysisInput(Msg& m) {
    const int inputs = engine_.config().numInputs;
    uint32_t mask = 0;
    while (!m.args.atEnd()) {
        const int32_t ch = m.args.int32("input channel");
        if (ch < 0 || ch >= inputs || ch >= 32)
            throw osc::ArgError("input channel " + std::to_string(ch) + " out of range (0.." + std::to_string(inputs - 1) + ")");
        mask |= 1u << ch;
    }
    engine_.setAnalysisInputs(mask);
    done(m.client, m.address);
}

} // namespace loopd

namespace loopd {

bool AnalysisModule::answerFromCache(uint16_t client, int32_t b, uint64_t serial) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = cache_.find(b);
    if (it == cache_.end() || it->second.first != serial) return false;
    const MaterialAnalysis& r = it->second.second;
    send(client, osc::MessageBuilder("/b_analysis").i(b).f(static_cast<float>(r.bpm)).f(static_cast<float>(r.confidence))
                     .i(static_cast<int32_t>(r.firstBeat)).i(static_cast<int32_t>(r.firstDownbeat)).s(r.key));
    return true;
}

void AnalysisModule::hBAnalyze(Msg& m) {
    const int32_t b = bufnum(m);
    m.args.expectEnd();
    const uint16_t client = m.client;
    const double sr = engine_.config().sampleRate;
    const int beatsPerBar = engine_.stats().beatsPerBar;
    worker_.post([=, this] {
        const BufferData* cur = buffers_.workerBuffer(b);
        if (!cur) { fail(client, "/b_analyze", "buffer " + std::to_string(b) + " is not loaded"); return; }
        if (answerFromCache(client, b, cur->serial)) return;
        if (static_cast<double>(cur->numFrames) < 3.0 * sr) {
            fail(client, "/b_analyze", "buffer " + std::to_string(b) + " is " + formatNumber(static_cast<float>(static_cast<double>(cur->numFrames) / sr)) +
                                           " s long: the analysis needs 3 s at least");
            return;
        }
        // The channels summed, copied here: the analysis runs on its own thread while this
        // buffer may change (copy on write leaves this data as it is until it is freed).
        std::vector<float> mono(static_cast<size_t>(cur->numFrames), 0.0f);
        float peak = 0.0f;
        for (int c = 0; c < cur->numChannels; ++c) {
            const float* x = cur->channel(c);
            for (int64_t i = 0; i < cur->numFrames; ++i) mono[static_cast<size_t>(i)] += x[i] / static_cast<float>(cur->numChannels);
        }
        for (float v : mono) peak = std::max(peak, std::fabs(v));
        const uint64_t serial = cur->serial;
        const double lo = options_.analysis.bpmLow, hi = options_.analysis.bpmHigh;
        jobs_.post([=, this, mono = std::move(mono)] {
            Done d{client, b, serial, peak < 1e-4f, {}};
            if (!d.silent) d.result = analyseMaterial(mono, sr, lo, hi, beatsPerBar);
            {
                std::lock_guard<std::mutex> lock(mutex_);
                finished_.push_back(std::move(d));
            }
            engine_.wakeControl();
        });
    });
}

void AnalysisModule::hBBeats(Msg& m) {
    const int32_t b = bufnum(m);
    m.args.expectEnd();
    const uint16_t client = m.client;
    worker_.post([=, this] {
        const BufferData* cur = buffers_.workerBuffer(b);
        if (!cur) { fail(client, "/b_beats", "buffer " + std::to_string(b) + " is not loaded"); return; }
        std::lock_guard<std::mutex> lock(mutex_);
        const auto it = cache_.find(b);
        if (it == cache_.end() || it->second.first != cur->serial) {
            fail(client, "/b_beats", "buffer " + std::to_string(b) + " is not analysed (/b_analyze it first)");
            return;
        }
        osc::MessageBuilder r("/b_beats.reply");
        r.i(b);
        for (int64_t f : it->second.second.beats) r.i(static_cast<int32_t>(f));
        send(client, r);
    });
}

} // namespace loopd
