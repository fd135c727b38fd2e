#include "server/engine/Engine.h"
#include "server/engine/ClockPeer.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <limits>
#include <cstring>
#include <ctime>

#include "dsp/Denormals.h"
#include "server/engine/BufferData.h"
#include "server/midi/MidiPads.h"
#include "server/midi/MidiParser.h"
#include "server/engine/Group.h"
#include "server/engine/StretchWorker.h"
#include "server/io/RecordSlot.h"
#include "server/rt/RtCheck.h"

namespace loopd {
namespace {
constexpr double kTwo32 = 4294967296.0;
constexpr int kMaxDepth = 64;

template <class... Ts> struct Overloaded : Ts... { using Ts::operator()...; };
template <class... Ts> Overloaded(Ts...) -> Overloaded<Ts...>;

} // namespace

Engine::Engine(const EngineConfig& config)
    : config_(config),
      controlQueue_(config.commandQueueSize),
      workerQueue_(config.commandQueueSize),
      replyQueue_(config.replyQueueSize),
      controlWake_(std::make_unique<Wakeup>()),
      // Every node at once (a /g_freeAll of a full tree) and then some: the overflow is for a
      // control thread that stood still for a while.
      released_(static_cast<size_t>(std::max(config.maxNodes, 64)) + 1024),
      nodes_(config.maxNodes) {
    config_.blockSize = std::clamp(config_.blockSize, 1, 8192);
    config_.numOutputs = std::clamp(config_.numOutputs, 1, kMaxChannels);
    config_.numInputs = std::clamp(config_.numInputs, 0, kMaxChannels);
    const int B = config_.blockSize;

    buffers_.assign(static_cast<size_t>(config_.maxBuffers), nullptr);
    heap_.resize(static_cast<size_t>(config_.schedulerCapacity));
    unreleased_.assign(4096, Released{});
    inputStorage_.assign(static_cast<size_t>(std::max(1, config_.numInputs) * B), 0.0f);
    for (int c = 0; c < config_.numInputs; ++c) inputPtrs_.push_back(inputStorage_.data() + c * B);
    if (inputPtrs_.empty()) inputPtrs_.push_back(inputStorage_.data());

    ctx_.sampleRate = config_.sampleRate;
    ctx_.blockSize = B;
    ctx_.buffers = buffers_.data();
    ctx_.numBuffers = config_.maxBuffers;
    ctx_.inputs = inputPtrs_.data();
    ctx_.numInputs = config_.numInputs;
    ctx_.numOutputs = config_.numOutputs;
    scratch_.assign(static_cast<size_t>(B), 0.0f);
    ctx_.scratch = scratch_.data();
    if (config_.cueOutput >= 0 && config_.cueOutput + 1 < config_.numOutputs) {
        cueStorage_.assign(static_cast<size_t>(2 * B), 0.0f);
        cueBus_.numChannels = 2;
        cueBus_.ch[0] = cueStorage_.data();
        cueBus_.ch[1] = cueStorage_.data() + B;
        ctx_.cueBus = &cueBus_;
    }
    ctx_.tempoBpm = config_.bpm;
    ctx_.players.baseBpm = config_.bpm;
    ctx_.players.followTempo = config_.followTempo;
    ctx_.clock = &tempo_;
    ctx_.forecast = &forecast_;
    ctx_.players.stretchAhead = config_.stretchAhead;
    ctx_.filtersEnabled = config_.enableFilters;
    tempo_.prepare(config_.sampleRate, config_.bpm, config_.beatsPerBar);
    statBpm_.store(config_.bpm);
    statBeatsPerBar_.store(config_.beatsPerBar);
    buses_ = std::make_unique<std::atomic<float>[]>(static_cast<size_t>(std::max(1, config_.numControlBuses)));
    for (int i = 0; i < config_.numControlBuses; ++i) buses_[static_cast<size_t>(i)].store(0.0f, std::memory_order_relaxed);
    capture_ = std::make_unique<CaptureRing>(std::max(1, config_.numInputs),
                                             static_cast<int64_t>(std::max(1.0, config_.captureSeconds) * config_.sampleRate),
                                             config_.realtimeClock);
    ctx_.loopers.capture = capture_.get();
    ctx_.loopers.onsets = &onsetFeed_;
    analysisRing_ = std::make_unique<SampleRing>(static_cast<size_t>(kAnalysisRingSeconds * config_.sampleRate), 1);
    analysisMix_.assign(static_cast<size_t>(config_.blockSize), 0.0f);
    ctx_.loopers.sync.roundTripFrames = std::max(0, config_.roundTripLatency);
    ctx_.loopers.sync.lenienceFrames = std::llround(0.1 * config_.sampleRate);
    paGain_.reset(1.0f);
    ctx_.declickSamples = std::llround(config_.declickSeconds * config_.sampleRate);
    ctx_.smoothSamples = std::llround(config_.smoothSeconds * config_.sampleRate);

    root_ = new Group(0, config_.numOutputs, B);
    nodes_.insert(0, root_);
    root_->onInserted(ctx_, 0);

    dsp::Limiter::Settings ls;
    ls.ceilingDb = config_.limiterCeilingDb;
    limiter_.prepare(config_.sampleRate, config_.numOutputs, ls);

    adaptIn_.assign(static_cast<size_t>(std::max(1, config_.numInputs) * B), 0.0f);
    adaptOut_.assign(static_cast<size_t>(config_.numOutputs * B), 0.0f);
    for (int c = 0; c < std::max(1, config_.numInputs); ++c) adaptInPtr_.push_back(adaptIn_.data() + c * B);
    for (int c = 0; c < config_.numOutputs; ++c) adaptOutPtr_.push_back(adaptOut_.data() + c * B);
}

Engine::~Engine() {
    // Called after the audio thread stopped: free what it still owned.
    std::vector<Node*> all;
    nodes_.forEach([&](Node* n) { all.push_back(n); });
    for (Node* n : all) delete n;
    delete pads_;
    for (BufferData* b : buffers_) delete b;
    Reply r;
    while (replyQueue_.tryPop(r))
        if (auto* t = std::get_if<reply::TreeReady>(&r.body)) delete t->snapshot;
    for (Released x; released_.tryPop(x);) freeReleased(x);
    for (size_t i = 0; i < numUnreleased_; ++i) freeReleased(unreleased_[i]);
    for (int i = 0; i < ctx_.report.numHandBack; ++i) delete ctx_.report.handBack[i].data;
    Command c;
    auto drop = [](Command& cm) {
        if (auto* n = std::get_if<cmd::NewNode>(&cm.body)) delete n->node;
        else if (auto* s = std::get_if<cmd::SwapBuffer>(&cm.body)) delete s->data;
        else if (auto* t = std::get_if<cmd::QueryTree>(&cm.body)) delete t->snapshot;
        else if (auto* u = std::get_if<cmd::Unit>(&cm.body)) { delete u->buffer; delete u->voice; }
        else if (auto* p = std::get_if<cmd::MidiPads>(&cm.body)) delete p->table;
    };
    while (controlQueue_.tryPop(c)) drop(c);
    while (workerQueue_.tryPop(c)) drop(c);
    for (int i = 0; i < heapSize_; ++i) drop(heap_[static_cast<size_t>(i)].cmd);
}

void Engine::raisePeak(std::atomic<float>& peak, const float* x, size_t n) noexcept {
    // Eight running maxima side by side (the compiler keeps them in one vector register; a
    // single one is a chain it may not reorder), then the largest of them: the same peak.
    float lane[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; ++k) lane[k] = std::max(lane[k], std::fabs(x[i + k]));
    for (; i < n; ++i) lane[0] = std::max(lane[0], std::fabs(x[i]));
    float m = 0.0f;
    for (float v : lane) m = std::max(m, v);
    float cur = peak.load(std::memory_order_relaxed);
    while (m > cur && !peak.compare_exchange_weak(cur, m, std::memory_order_relaxed)) {}
}

int64_t Engine::fixedMemoryBytes() const noexcept {
    const int64_t ring = capture_->capacity() * capture_->channels() * static_cast<int64_t>(sizeof(float));
    const int64_t queues = static_cast<int64_t>((config_.commandQueueSize * 2 + config_.schedulerCapacity) * sizeof(Command) +
                                                config_.replyQueueSize * sizeof(Reply));
    const int64_t analysis = static_cast<int64_t>(kAnalysisRingSeconds * config_.sampleRate) * static_cast<int64_t>(sizeof(float));
    return ring + queues + analysis;
}

bool Engine::pushCommand(Command&& c, bool countDrop) noexcept {
    if (controlQueue_.tryPush(std::move(c))) return true;
    if (countDrop) droppedCommands_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

size_t Engine::commandSpace() const noexcept {
    const size_t queued = controlQueue_.sizeApprox();
    return queued >= controlQueue_.capacity() ? 0 : controlQueue_.capacity() - queued;
}

bool Engine::pushWorkerCommand(Command&& c) noexcept {
    if (workerQueue_.tryPush(std::move(c))) return true;
    droppedCommands_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

bool Engine::popReply(Reply& r) noexcept { return replyQueue_.tryPop(r); }

EngineStats Engine::stats(bool takePeaks) noexcept {
    EngineStats s;
    s.numNodes = statNodes_.load(std::memory_order_relaxed);
    s.numGroups = statGroups_.load(std::memory_order_relaxed);
    s.numBuffers = statBuffers_.load(std::memory_order_relaxed);
    s.cpuAverage = cpuAverage_.load(std::memory_order_relaxed);
    s.cpuPeak = takePeaks ? cpuPeak_.exchange(0.0, std::memory_order_relaxed) : cpuPeak_.load(std::memory_order_relaxed);
    s.cpuPeakOwn = takePeaks ? cpuPeakOwn_.exchange(0.0, std::memory_order_relaxed) : cpuPeakOwn_.load(std::memory_order_relaxed);
    s.overBudgetBlocks = overBudgetBlocks_.load(std::memory_order_relaxed);
    s.busySeconds = busySeconds_.load(std::memory_order_relaxed);
    s.xruns = xruns_.load(std::memory_order_relaxed);
    s.lateCommands = late_.load(std::memory_order_relaxed);
    s.droppedCommands = droppedCommands_.load(std::memory_order_relaxed);
    s.droppedReplies = droppedReplies_.load(std::memory_order_relaxed);
    s.missingBufferBlocks = missingBufferBlocks_.load(std::memory_order_relaxed);
    s.clockResyncs = clockResyncs_.load(std::memory_order_relaxed);
    s.stretchUnderruns = stretchUnderruns_.load(std::memory_order_relaxed);
    s.sampleTime = publishedSampleTime_.load(std::memory_order_relaxed);
    s.limiterMinGain = takePeaks ? limiterMinGain_.exchange(1.0f, std::memory_order_relaxed) : limiterMinGain_.load(std::memory_order_relaxed);
    s.bpm = statBpm_.load(std::memory_order_relaxed);
    s.beats = statBeats_.load(std::memory_order_relaxed);
    s.beatsPerBar = statBeatsPerBar_.load(std::memory_order_relaxed);
    return s;
}

// ---------------------------------------------------------------------------------------------
// Audio thread

void Engine::wakeControl() noexcept { controlWake_->post(); }

void Engine::reply(uint16_t client, ReplyBody&& body) noexcept {
    Reply r;
    r.client = client;
    r.body = std::move(body);
    if (!replyQueue_.tryPush(std::move(r))) droppedReplies_.fetch_add(1, std::memory_order_relaxed);
    controlPending_ = true;
}

void Engine::fail(const Command& c, FailCode code, int32_t a, int32_t b, ParamId p, float v) noexcept {
    reply(c.client, reply::Fail{c.address, code, a, b, p, v});
}

void Engine::rtLog(uint8_t level, const char* text, int64_t value) noexcept {
    reply::Log l{};
    l.level = level;
    size_t n = 0;
    while (text[n] && n < sizeof(l.text) - 24) { l.text[n] = text[n]; ++n; }
    const auto r = std::to_chars(l.text + n, l.text + sizeof(l.text) - 1, value);
    *r.ptr = '\0';
    reply(kNoClient, l);
}

void Engine::dispose(Node* n) noexcept { release(Released{Released::What::Node, n}); }

void Engine::release(Released r) noexcept {
    // In order: nothing overtakes what waits from an earlier block.
    controlPending_ = true;
    if (numUnreleased_ == 0 && released_.tryPush(std::move(r))) return;
    if (numUnreleased_ < unreleased_.size()) unreleased_[numUnreleased_++] = r;
    else droppedReplies_.fetch_add(1, std::memory_order_relaxed); // leaked rather than freed on this thread
}

void Engine::sendUnreleased() noexcept {
    size_t sent = 0;
    while (sent < numUnreleased_ && released_.tryPush(Released(unreleased_[sent]))) ++sent;
    if (sent == 0) return;
    std::copy(unreleased_.begin() + static_cast<std::ptrdiff_t>(sent), unreleased_.begin() + static_cast<std::ptrdiff_t>(numUnreleased_), unreleased_.begin());
    numUnreleased_ -= sent;
}

bool Engine::popReleased(Released& r) noexcept { return released_.tryPop(r); }

void Engine::freeReleased(Released& r) noexcept {
    switch (r.what) {
    case Released::What::Node: delete static_cast<Node*>(r.ptr); break;
    case Released::What::Buffer:
    case Released::What::LoopBuffer:
    case Released::What::LoopSave: delete static_cast<BufferData*>(r.ptr); break;
    case Released::What::Voice: delete static_cast<StretchVoice*>(r.ptr); break;
    case Released::What::Recording:
    case Released::What::Rejected: break; // the Recorder's
    case Released::What::MidiPads: delete static_cast<midi::MidiPadTable*>(r.ptr); break;
    }
    r.ptr = nullptr;
}

void Engine::nodeEvent(NodeEventKind kind, Node* n, uint16_t client, bool trace) noexcept {
    reply::NodeEvent e{};
    e.kind = kind;
    e.trace = trace;
    e.nodeKind = static_cast<uint8_t>(n->kind());
    e.id = n->id();
    e.parent = n->parent ? n->parent->id() : -1;
    e.prev = n->prev ? n->prev->id() : -1;
    e.next = n->next ? n->next->id() : -1;
    e.isGroup = n->isGroup();
    e.head = e.tail = -1;
    if (n->isGroup()) {
        auto* g = static_cast<Group*>(n);
        e.head = g->head ? g->head->id() : -1;
        e.tail = g->tail ? g->tail->id() : -1;
    }
    e.sampleTime = kind == NodeEventKind::End && n->endedAt >= 0 ? n->endedAt : renderPos_;
    reply(client, e);
}

double Engine::sampleRateNtpScale() const noexcept { return config_.sampleRate / kTwo32; }

int64_t Engine::sampleForTimetag(uint64_t tag) const noexcept {
    if (!config_.realtimeClock) {
        // nrt: the tag is seconds from the start of the score, exact in 128-bit arithmetic.
        const unsigned __int128 num = static_cast<unsigned __int128>(tag) * static_cast<uint64_t>(std::llround(config_.sampleRate));
        return static_cast<int64_t>((num + (static_cast<unsigned __int128>(1) << 31)) >> 32);
    }
    const double diff = static_cast<double>(tag) - blockNtp_;
    return ctx_.blockStartSample + std::llround(diff * sampleRateNtpScale()) - limiter_.latencySamples();
}

void Engine::updateClock() noexcept {
    if (!config_.realtimeClock) return;
    if (replayClock_) {
        // A replay: the live block's clock, as the session log kept it.
        blockNtp_ = replayNtp_;
        return;
    }
    const auto now = static_cast<double>(ntpNow());
    const int64_t s = ctx_.blockStartSample;
    if (!clockStarted_) {
        anchorNtp_ = now;
        anchorSample_ = s;
        clockStarted_ = true;
    }
    const double predicted = anchorNtp_ + static_cast<double>(s - anchorSample_) * (kTwo32 / config_.sampleRate);
    const double err = now - predicted;
    if (std::fabs(err) > 0.05 * kTwo32) {
        // More than 50 ms apart (device stalled, clock stepped): start a new mapping.
        rtLog(3, "audio clock resynchronised to wall time (device stalled or clock stepped) at sample ", s);
        anchorNtp_ = now;
        anchorSample_ = s;
        clockResyncs_.fetch_add(1, std::memory_order_relaxed);
        blockNtp_ = now;
        return;
    }
    // Slew slowly towards the wall clock: callback jitter averages out, drift is followed.
    anchorNtp_ += err * 0.002;
    blockNtp_ = anchorNtp_ + static_cast<double>(s - anchorSample_) * (kTwo32 / config_.sampleRate);
}

void Engine::forgetPreRoll(uint64_t seq) noexcept {
    for (int i = 0; i < numPreRolls_; ++i)
        if (preRolls_[i].seq == seq) { preRolls_[i] = preRolls_[--numPreRolls_]; return; }
}

void Engine::heapPush(Scheduled&& s) noexcept {
    size_t i = static_cast<size_t>(heapSize_++);
    heap_[i] = std::move(s);
    while (i > 0) {
        const size_t p = (i - 1) / 2;
        const Scheduled& a = heap_[i];
        const Scheduled& b = heap_[p];
        if (a.sample < b.sample || (a.sample == b.sample && a.seq < b.seq)) { std::swap(heap_[i], heap_[p]); i = p; }
        else break;
    }
}

void Engine::heapPop() noexcept {
    const size_t n = static_cast<size_t>(--heapSize_);
    if (n == 0) return;
    heap_[0] = std::move(heap_[n]);
    size_t i = 0;
    for (;;) {
        const size_t l = 2 * i + 1, r = l + 1;
        size_t m = i;
        auto less = [&](size_t x, size_t y) {
            return heap_[x].sample < heap_[y].sample || (heap_[x].sample == heap_[y].sample && heap_[x].seq < heap_[y].seq);
        };
        if (l < n && less(l, m)) m = l;
        if (r < n && less(r, m)) m = r;
        if (m == i) break;
        std::swap(heap_[i], heap_[m]);
        i = m;
    }
}

void Engine::accept(Command& c) noexcept {
    if (auto* sb = std::get_if<cmd::SwapBuffer>(&c.body); sb && sb->at != 0 && c.timetag <= 1) {
        // On the clock's next beat or bar line: scheduled at that sample (as a timetag would be).
        const double framesPerBeat = 60.0 * config_.sampleRate / std::max(1.0, tempo_.bpm());
        const double unit = sb->at == 2 ? std::max(1, tempo_.beatsPerBar()) : 1.0;
        const double beats = tempo_.beats();
        const double toLine = std::max(0.0, std::ceil(beats / unit - 1e-9) * unit - beats);
        const int64_t at = renderPos_ + std::llround(toLine * framesPerBeat);
        sb->at = 0;
        if (at > renderPos_ && heapSize_ < static_cast<int>(heap_.size())) {
            heapPush(Scheduled{at, seq_++, std::move(c)});
            return;
        }
    }
    if (c.timetag <= 1) { execute(c); return; }
    const int64_t at = sampleForTimetag(c.timetag);
    if (at < renderPos_) {
        late_.fetch_add(1, std::memory_order_relaxed);
        reply(c.client, reply::Late{static_cast<double>(renderPos_ - at) / config_.sampleRate, c.address});
        execute(c);
        return;
    }
    if (heapSize_ >= static_cast<int>(heap_.size())) {
        fail(c, FailCode::SchedulerFull, static_cast<int32_t>(heap_.size()));
        handBackPayload(c);
        return;
    }
    if (const auto* t = std::get_if<cmd::Tempo>(&c.body))
        forecast_.add(TempoForecast::Change{at, seq_, t->bpm, t->seconds, t->downSeconds, t->mode});
    if (const auto* nn = std::get_if<cmd::NewNode>(&c.body); nn && config_.stretchAhead && numPreRolls_ < kMaxPreRolls &&
        nn->node && nn->node->wantsPreRoll())
        preRolls_[numPreRolls_++] = PreRoll{nn->node, seq_, at};
    heapPush(Scheduled{at, seq_++, std::move(c)});
}

void Engine::drainQueue(SpscQueue<Command>& q, int& budget, uint64_t& taken, uint64_t limit) noexcept {
    // Commands wait in their queue while the replies have no room: a burst of queries (thousands
    // of /n_query over TCP) must not outrun a control thread that is slow to send the answers.
    const size_t room = config_.replyQueueSize > kReplyReserve ? config_.replyQueueSize - kReplyReserve : config_.replyQueueSize / 2;
    Command c;
    while (budget > 0 && taken < limit && replyQueue_.sizeApprox() < room && q.tryPop(c)) {
        --budget;
        ++taken;
        // What the session log compares a replay by: the command's kind, address and client.
        uint64_t h = commandHash_ ^ (static_cast<uint64_t>(c.body.index()) << 16 ^ c.client);
        h *= 0x100000001b3ull;
        for (const char* a = c.address; a && *a; ++a) h = (h ^ static_cast<uint8_t>(*a)) * 0x100000001b3ull;
        commandHash_ = h;
        accept(c);
    }
}

void Engine::startSessionLog(RecordSlot* inputTap) {
    sessionMarks_ = std::make_unique<SpscQueue<SessionMark>>(8192);
    inputTap_ = inputTap;
}

void Engine::process(const float* const* in, float* const* out) noexcept {
    rt::AudioCallbackScope mark;
    dsp::ScopedNoDenormals noDenormals;
    const auto t0 = std::chrono::steady_clock::now();
    const bool measureOwn = measureOwnNext_;
    timespec cpu0{};
    if (measureOwn) clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    const int B = config_.blockSize;

    ctx_.blockStartSample = renderPos_;
    if (!midiOutputTaken_.load(std::memory_order_acquire)) {
        // No driver sends MIDI: a sender thread (ALSA) gets what the last block made, or nobody.
        if (midiOutputThread_.load(std::memory_order_acquire)) {
            for (midi::MidiEvent e; midiFromControl_.tryPop(e);)
                if (!midiToThread_.tryPush(e)) midiDropped_.fetch_add(1, std::memory_order_relaxed);
            for (int i = 0; i < midiOutCount_; ++i)
                if (!midiToThread_.tryPush(midiOut_[i])) midiDropped_.fetch_add(1, std::memory_order_relaxed);
        }
        midiOutCount_ = 0;
    }
    updateClock();
    for (int c = 0; c < config_.numInputs; ++c) {
        if (in && in[c]) std::memcpy(inputStorage_.data() + c * B, in[c], sizeof(float) * static_cast<size_t>(B));
        else std::memset(inputStorage_.data() + c * B, 0, sizeof(float) * static_cast<size_t>(B));
    }
    capture_->write(inputPtrs_.data(), config_.numInputs, renderPos_, B);
    if (config_.numInputs > 0) {
        // The analysis hears the chosen inputs summed (it only reads the ring: nothing waits).
        const uint32_t mask = analysisMask_.load(std::memory_order_relaxed);
        std::fill(analysisMix_.begin(), analysisMix_.end(), 0.0f);
        for (int c = 0; c < config_.numInputs; ++c) {
            if (mask != 0 && (c >= 32 || !(mask & (1u << c)))) continue;
            const float* x = inputStorage_.data() + c * B;
            for (int i = 0; i < B; ++i) analysisMix_[static_cast<size_t>(i)] += x[i];
        }
        const float* mix[1] = {analysisMix_.data()};
        if (analysisRing_->writableFrames() >= static_cast<size_t>(B)) analysisRing_->writePlanar(mix, 0, static_cast<size_t>(B), 1);
        else analysisDropped_.fetch_add(static_cast<uint64_t>(B), std::memory_order_release);
    }
    raisePeak(inPeak_, inputStorage_.data(), static_cast<size_t>(config_.numInputs * B));

    // Hand back what could not be handed back before.
    sendUnreleased();

    if (inputTap_) {
        // The session log keeps the input exactly as the nodes hear it, block by block.
        const size_t wrote = inputTap_->ring.writePlanar(inputPtrs_.data(), 0, static_cast<size_t>(B), config_.numInputs);
        if (wrote < static_cast<size_t>(B))
            inputTap_->droppedFrames.fetch_add(static_cast<uint64_t>(B) - wrote, std::memory_order_relaxed);
    }

    int budget = config_.maxCommandsPerBlock;
    // Control first: a worker's result (a loaded file) may address a node created by a command
    // that was sent before it (loop content after /loop_add).
    const uint64_t takenBefore = controlTaken_ + workerTaken_;
    drainQueue(controlQueue_, budget, controlTaken_, controlLimit_);
    drainQueue(workerQueue_, budget, workerTaken_, workerLimit_);
    if (sessionMarks_ && controlTaken_ + workerTaken_ != takenBefore &&
        !sessionMarks_->tryPush(SessionMark{renderPos_, controlTaken_, workerTaken_, commandHash_, blockNtp_}))
        sessionMarksLost_.fetch_add(1, std::memory_order_relaxed);
    applyBusMaps();
    for (midi::MidiEvent e; midiFromThread_.tryPop(e);) acceptMidi(renderPos_, e.bytes, e.size);
    applyMidiIn();
    applyClockPeer();
    serviceGroupStarts();
    afterSegment();

    if (numPreRolls_ > 0) {
        ctx_.segmentStart = ctx_.blockStartSample;
        ctx_.beats = tempo_.beats();
        for (int i = 0; i < numPreRolls_; ++i)
            if (preRolls_[i].sample - ctx_.blockStartSample <= Node::kPreRollLead) preRolls_[i].node->preRoll(ctx_, preRolls_[i].sample);
    }

    int pos = 0;
    while (pos < B) {
        while (heapSize_ > 0 && heap_[0].sample <= ctx_.blockStartSample + pos) {
            Command c = std::move(heap_[0].cmd);
            if (std::holds_alternative<cmd::Tempo>(c.body)) forecast_.remove(heap_[0].seq);
            if (std::holds_alternative<cmd::NewNode>(c.body)) forgetPreRoll(heap_[0].seq);
            heapPop();
            execute(c);
        }
        afterSegment();
        int next = B;
        if (heapSize_ > 0) next = static_cast<int>(std::min<int64_t>(B, heap_[0].sample - ctx_.blockStartSample));
        renderSegment(pos, next - pos);
        pos = next;
    }

    for (int c = 0; c < config_.numOutputs; ++c) {
        std::memcpy(out[c], root_->bus().ch[c], sizeof(float) * static_cast<size_t>(B));
        raisePeak(outPeak_, out[c], static_cast<size_t>(B));
    }

    if (ctx_.report.bufferMissing) {
        ctx_.report.bufferMissing = false;
        missingBufferBlocks_.fetch_add(1, std::memory_order_relaxed);
        // One line per burst: at most every 10 s.
        if (missingLoggedAt_ < 0 || renderPos_ - missingLoggedAt_ > static_cast<int64_t>(10 * config_.sampleRate)) {
            missingLoggedAt_ = renderPos_;
            rtLog(3, "a player reads a buffer that is not loaded (silent until it is): buffer ", ctx_.report.missingBuffer);
        }
    }
    statNodes_.store(nodes_.size(), std::memory_order_relaxed);
    statGroups_.store(numGroups_, std::memory_order_relaxed);
    statBuffers_.store(numLoadedBuffers_, std::memory_order_relaxed);
    const float lg = limiter_.takeMinGain();
    if (lg < limiterMinGain_.load(std::memory_order_relaxed)) limiterMinGain_.store(lg, std::memory_order_relaxed);
    if (ctx_.report.stretchUnderruns != stretchUnderruns_.load(std::memory_order_relaxed)) {
        // One log line per burst (at most one per second of underruns).
        if (ctx_.report.stretchUnderruns - underrunsLogged_ >= 1 && (underrunsLogged_ == 0 || ctx_.report.stretchUnderruns - underrunsLogged_ > 750)) {
            rtLog(3, "stretch underrun: a stretched player was covered by varispeed; underruns so far ", static_cast<int64_t>(ctx_.report.stretchUnderruns));
            underrunsLogged_ = ctx_.report.stretchUnderruns;
        }
        stretchUnderruns_.store(ctx_.report.stretchUnderruns, std::memory_order_relaxed);
    }
    statBpm_.store(tempo_.bpm(), std::memory_order_relaxed);
    statBeats_.store(tempo_.beats(), std::memory_order_relaxed);
    statBeatsPerBar_.store(tempo_.beatsPerBar(), std::memory_order_relaxed);
    publishedSampleTime_.store(renderPos_, std::memory_order_release);

    const double used = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double pct = 100.0 * used * config_.sampleRate / B;
    const double avg = cpuAverage_.load(std::memory_order_relaxed);
    cpuAverage_.store(avg + (pct - avg) * 0.01, std::memory_order_relaxed);
    busySeconds_.store(busySeconds_.load(std::memory_order_relaxed) + used, std::memory_order_relaxed);
    if (pct > cpuPeak_.load(std::memory_order_relaxed)) cpuPeak_.store(pct, std::memory_order_relaxed);
    // The thread's own CPU time in the block, read (CLOCK_THREAD_CPUTIME_ID is a system call,
    // ~1.5 us on a VM) only in blocks after one that used at least a quarter of its time: own
    // time is never more than wall-clock time, so a block under budget on the wall clock is
    // under budget on its own. (Not seen: a block that jumps from under 25 % to over 100 %.)
    if (measureOwn) {
        timespec cpu1{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
        const double own = std::min(used, static_cast<double>(cpu1.tv_sec - cpu0.tv_sec) + 1e-9 * static_cast<double>(cpu1.tv_nsec - cpu0.tv_nsec));
        const double ownPct = 100.0 * own * config_.sampleRate / B;
        if (ownPct > cpuPeakOwn_.load(std::memory_order_relaxed)) cpuPeakOwn_.store(ownPct, std::memory_order_relaxed);
        if (ownPct >= 100.0) overBudgetBlocks_.fetch_add(1, std::memory_order_relaxed);
    }
    measureOwnNext_ = pct >= 25.0;
    if (controlPending_) {
        controlPending_ = false;
        controlWake_->post();
    }
}

void Engine::renderSegment(int offset, int numFrames) noexcept {
    if (numFrames <= 0) return;
    ctx_.beats = tempo_.beats();
    ctx_.beatsPerBar = tempo_.beatsPerBar();
    ctx_.segmentStart = ctx_.blockStartSample + offset;
    ctx_.loopers.sync.writers = 0;
    if (ctx_.cueBus)
        for (int c = 0; c < 2; ++c) std::memset(cueBus_.ch[c] + offset, 0, sizeof(float) * static_cast<size_t>(numFrames));
    root_->renderOwnBus(ctx_, offset, numFrames);
    Bus& bus = root_->bus();
    if (ctx_.loopers.sync.paMute || paGain_.ramping() || paGain_.value() < 1.0f) {
        // PA mute: while a loop records, the main outputs fade out; the headphone (cue) pair
        // carries the whole mix, through the same limiter, so it stays aligned with the mains.
        const bool cue = ctx_.cueBus != nullptr;
        if (cue && ctx_.loopers.sync.paMute)
            for (int c = 0; c < 2; ++c) {
                float* dst = cueBus_.ch[c] + offset;
                const float* src = bus.ch[std::min(c, bus.numChannels - 1)] + offset;
                for (int i = 0; i < numFrames; ++i) dst[i] += src[i];
            }
        const float target = ctx_.loopers.sync.paMute && ctx_.loopers.sync.writers > 0 ? 0.0f : 1.0f;
        if (target != paGain_.target()) paGain_.setTarget(target, ctx_.declickSamples);
        for (int i = 0; i < numFrames; ++i) {
            const float g = paGain_.next();
            for (int c = 0; c < bus.numChannels; ++c) {
                if (cue && (c == config_.cueOutput || c == config_.cueOutput + 1)) continue;
                bus.ch[c][offset + i] *= g;
            }
        }
    }
    if (ctx_.cueBus) {
        // The cue pair bypasses the master fader (it is pre-fader by design); the limiter guards it too.
        for (int c = 0; c < 2; ++c) {
            float* dst = bus.ch[config_.cueOutput + c] + offset;
            const float* src = cueBus_.ch[c] + offset;
            for (int i = 0; i < numFrames; ++i) dst[i] += src[i];
        }
    }
    limiter_.process(bus.ch, offset, numFrames);
    for (RecordSlot* slot : recorders_) {
        if (!slot) continue;
        const float* const* src = bus.ch;
        int available = bus.numChannels;
        const float* silence[kMaxChannels] = {};
        if (slot->group != 0) {
            Node* n = nodes_.find(slot->group);
            if (n && n->isGroup() && n->audible()) {
                src = static_cast<Group*>(n)->bus().ch;
                available = static_cast<Group*>(n)->bus().numChannels;
            } else {
                src = silence;
                available = 0;
            }
        }
        int from = offset, count = numFrames;
        if (slot->skipFrames > 0) {
            const int skip = std::min(slot->skipFrames, count);
            slot->skipFrames -= skip;
            from += skip;
            count -= skip;
        }
        const size_t wrote = slot->ring.writePlanar(src, from, static_cast<size_t>(count), available);
        if (wrote < static_cast<size_t>(count))
            slot->droppedFrames.fetch_add(static_cast<uint64_t>(count) - wrote, std::memory_order_relaxed);
    }
    // The clock moves with rendered time; beats are reported at the sample they fall on.
    const int64_t segmentStart = ctx_.blockStartSample + offset;
    const double beatsBefore = tempo_.beats();
    tempo_.advance(numFrames, [&](int64_t beat, int frame) {
        const int bpb = tempo_.beatsPerBar();
        reply(kNoClient, reply::Beat{beat, static_cast<int32_t>(beat / bpb) + 1, static_cast<int32_t>(beat % bpb) + 1,
                                     tempo_.bpm(), segmentStart + frame});
    });
    if (midiClockOut_) {
        // MIDI clock: a tick every 1/24 beat, on the first frame at or after it (as the beats).
        const int bar = 24 * std::max(1, tempo_.beatsPerBar());
        const double t0 = beatsBefore * 24.0, t1 = tempo_.beats() * 24.0;
        for (double t = std::floor(t0) + 1.0; t <= t1; t += 1.0) {
            const double frac = (t - t0) / (t1 - t0);
            const int frame = std::clamp(static_cast<int>(std::ceil(frac * numFrames - 1e-6)), 0, numFrames);
            const auto tick = static_cast<int64_t>(t);
            if (midiStartPending_ && tick % bar == 0) {
                emitMidi(segmentStart + frame, 0xfa);
                midiStartPending_ = false;
            }
            emitMidi(segmentStart + frame, 0xf8);
        }
    }
    ctx_.tempoBpm = tempo_.bpm();
    renderPos_ = ctx_.blockStartSample + offset + numFrames;
    afterSegment();
}

void Engine::afterSegment() noexcept {
    resolveStarts();
    collectEnded();
    handBackBuffers();
}

void Engine::handBackBuffers() noexcept {
    for (int i = 0; i < ctx_.report.numHandBack; ++i) handBackBuffer(ctx_.report.handBack[i].data, ctx_.report.handBack[i].nodeId, ctx_.report.handBack[i].saved);
    ctx_.report.numHandBack = 0;
}

void Engine::doUnit(Command& c, cmd::Unit& m) noexcept {
    Node* n = nodes_.find(m.id);
    UnitFail f{FailCode::NodeNotFound};
    bool ok = false;
    if (n && static_cast<uint8_t>(n->kind()) != m.kind) f = UnitFail{FailCode::WrongNodeKind, m.kind};
    else if (n) ok = n->unitCommand(m, ctx_, renderPos_, f);
    if (!ok) fail(c, f.code, m.id, f.b, ParamId::Count, f.value);
    // What the node did not take, or gave back, goes to the control thread.
    if (m.buffer) {
        if (m.bufferIsSave && !ok) m.buffer->numFrames = -1; // tells the control thread the copy did not happen
        handBackBuffer(m.buffer, m.id, m.bufferIsSave);
    }
    if (m.voice) release(Released{Released::What::Voice, m.voice});
}

void Engine::resolveStarts() noexcept {
    // dipstream links: nodes waiting on a node that just started.
    for (int i = 0; i < ctx_.report.numStarted; ++i) {
        Node* s = ctx_.report.started[i];
        if (!s) continue; // disposed since it started
        const int32_t sid = s->id();
        const int64_t startedAt = s->startedAt;
        nodes_.forEach([&](Node* n) {
            if (n->startWith != sid || n->state() != Node::State::Pending || n->scheduledStart >= 0) return;
            const int64_t at = startedAt + std::llround(n->linkOffsetSeconds * config_.sampleRate);
            if (at >= renderPos_) {
                n->scheduledStart = at;
            } else {
                // The start lies in what is already rendered: join in sync.
                n->scheduledStart = renderPos_;
                n->skipFrames(static_cast<double>(renderPos_ - at), ctx_);
            }
        });
    }
    ctx_.report.numStarted = 0;
}

void Engine::collectEnded() noexcept {
    if (ctx_.report.endedOverflow) {
        ctx_.report.endedOverflow = false;
        nodes_.forEach([&](Node* n) {
            if (n->state() != Node::State::Ended) return;
            bool listed = false;
            for (int i = 0; i < ctx_.report.numEnded; ++i) listed |= ctx_.report.ended[i] == n;
            if (!listed && ctx_.report.numEnded < ProcessContext::Report::kMaxEnded) ctx_.report.ended[ctx_.report.numEnded++] = n;
            else if (!listed) ctx_.report.endedOverflow = true;
        });
    }
    bool treeChanged = false;
    for (int i = 0; i < ctx_.report.numEnded; ++i) {
        Node* n = ctx_.report.ended[i];
        if (!n) continue; // already taken out with its group (disposeSubtree scrubbed it)
        const int32_t endedId = n->id();
        const int64_t endSample = n->endedAt >= 0 ? std::min(n->endedAt, renderPos_) : renderPos_;
        n->endedAt = endSample;
        // stopWith links fire at the end sample (+offset).
        nodes_.forEach([&](Node* other) {
            if (other->stopWith != endedId || other == n) return;
            const int64_t at = endSample + std::llround(other->linkOffsetSeconds * config_.sampleRate);
            if (at <= renderPos_) other->release(ctx_, renderPos_);
            else other->scheduledStop = at;
        });
        disposeSubtree(n);
        treeChanged = true;
    }
    ctx_.report.numEnded = 0;
    if (treeChanged) recomputeSolo();
}

void Engine::disposeSubtree(Node* n) noexcept {
    if (n->isGroup()) {
        auto* g = static_cast<Group*>(n);
        while (g->head) disposeSubtree(g->head);
        --numGroups_;
        for (RecordSlot* slot : recorders_)
            if (slot && slot->group == n->id()) slot->group = -1; // records silence from now on
    }
    nodeEvent(NodeEventKind::End, n);
    busMaps_ -= n->numBusMaps;
    // Once handed back, the control thread may free it at any moment: nothing on this thread
    // may point at it any more.
    for (int i = 0; i < ctx_.report.numEnded; ++i) if (ctx_.report.ended[i] == n) ctx_.report.ended[i] = nullptr;
    for (int i = 0; i < ctx_.report.numStarted; ++i) if (ctx_.report.started[i] == n) ctx_.report.started[i] = nullptr;
    Group::unlink(n);
    nodes_.erase(n->id());
    dispose(n);
}

void Engine::recomputeSolo() noexcept {
    // A node plays when nothing is soloed, when it or an ancestor is soloed, or when it is on the
    // path to a soloed node (so the soloed node's parents stay open). The paths are marked once,
    // walking up from each soloed node and stopping at marks: O(nodes x depth), not O(nodes^2).
    bool anySolo = false;
    nodes_.forEach([&](Node* n) {
        n->onSoloPath = false;
        anySolo |= n->solo;
    });
    if (anySolo)
        nodes_.forEach([&](Node* s) {
            if (!s->solo) return;
            for (Node* a = s->parent; a && !a->onSoloPath; a = a->parent) a->onSoloPath = true;
        });
    nodes_.forEach([&](Node* n) {
        if (n == root_) return;
        bool keep = !anySolo || n->onSoloPath;
        for (Node* a = n; a && !keep; a = a->parent) keep = a->solo;
        n->setSoloMuted(!keep, ctx_);
    });
}

void Engine::midiIn(int offset, const uint8_t* bytes, size_t size) noexcept {
    // Input frame f of this period is rendered at renderPos_ + adaptFill_ + f (see below).
    acceptMidi(renderPos_ + adaptFill_ + std::max(0, offset), bytes, size);
}

void Engine::driverClockSlipped(int64_t frames) noexcept {
    clockFollower_.slip(frames);
    startTickSample_ -= frames;
}

void Engine::midiFromThread(const uint8_t* bytes, size_t size) noexcept {
    if (size == 0 || size > 3) return;
    midi::MidiEvent e;
    e.size = static_cast<uint8_t>(size);
    std::memcpy(e.bytes, bytes, size);
    if (!midiFromThread_.tryPush(e)) midiDropped_.fetch_add(1, std::memory_order_relaxed);
}

void Engine::acceptMidi(int64_t sample, const uint8_t* bytes, size_t size) noexcept {
    if (size == 0 || size > 3 || bytes[0] < 0x80 || bytes[0] == 0xf0) return;
    const uint8_t status = bytes[0];
    if (status >= 0xf8 && status != 0xf8 && status != 0xfa && status != 0xfb && status != 0xfc) return; // sensing, reset: nothing for loopd
    if (size != 1u + midi::MidiParser::dataBytes(status) && status < 0xf8) return; // not whole
    if (midiInCount_ == kMaxMidiIn) { midiDropped_.fetch_add(1, std::memory_order_relaxed); return; }
    midi::MidiEvent& e = midiIn_[midiInCount_++];
    e.sample = sample;
    e.size = static_cast<uint8_t>(size);
    e.flags = 0;
    e.bytes[0] = e.bytes[1] = e.bytes[2] = 0;
    std::memcpy(e.bytes, bytes, size);
}

void Engine::applyMidiIn() noexcept {
    if (midiInCount_ == 0) return;
    const int64_t start = ctx_.blockStartSample, end = start + config_.blockSize;
    const double sr = config_.sampleRate;
    int kept = 0;
    for (int i = 0; i < midiInCount_; ++i) {
        midi::MidiEvent ev = midiIn_[i];
        if (ev.sample >= end) { midiIn_[kept++] = ev; continue; } // a later block's
        const uint8_t status = ev.bytes[0];
        if (status < 0xf0) {
            // A channel message: the pads act now; everything goes on to the control thread.
            if (applyPads(ev.bytes, ev.sample)) ev.flags |= midi::MidiEvent::kPadsDone;
            if (!midiToControl_.tryPush(ev)) midiDropped_.fetch_add(1, std::memory_order_relaxed);
            controlPending_ = true;
            continue;
        }
        switch (status) {
        case 0xfa: clockInStart_ = true; clockInContinue_ = false; songPosition_ = 0; break;
        case 0xfb: clockInContinue_ = true; clockInStart_ = false; break;
        case 0xfc: clockInStart_ = clockInContinue_ = false; ticksSinceStart_ = -1; break;
        case 0xf2: songPosition_ = (ev.bytes[1] & 0x7f) | ((ev.bytes[2] & 0x7f) << 7); break;
        case 0xf8: {
            const bool known = clockFollower_.tick(ev.sample, sr);
            if (known) midiClockBpm_.store(clockFollower_.bpm(), std::memory_order_relaxed);
            if (!midiTempo_) break;
            // Only a tempo /tempo would take (20..400 BPM): garbage on the cable must not race the clock.
            const double heard = clockFollower_.bpm();
            if (known && heard >= 20.0 && heard <= 400.0 && std::fabs(heard - tempo_.bpm()) > 1e-4) tempo_.jump(heard);
            if (clockInStart_ || clockInContinue_) {
                // This tick is beat 0 (Start) or the Song Position (Continue): the position at
                // the block's start is set so that the clock reaches it on the tick's sample.
                const double at = clockInStart_ ? 0.0 : songPosition_ / 4.0;
                const double ahead = static_cast<double>(ev.sample - start) * tempo_.bpm() / (60.0 * sr);
                tempo_.setPosition(at - ahead);
                ++ctx_.clockEpoch;
                clockInStart_ = clockInContinue_ = false;
                ticksSinceStart_ = 0;
                startTickSample_ = ev.sample;
                tickBase_ = at;
            } else if (ticksSinceStart_ >= 0 && clockFollower_.samplesPerTick() > 0.0) {
                // Once a beat, the phase: where the external clock is and where ours is on that
                // tick's sample; the difference slides ours over a beat (tempo errors of a
                // jittery clock would otherwise add up). The tick's number comes from its time,
                // not from counting: a tick lost on the way (a missed cycle) does not shift it.
                const auto tick = static_cast<int64_t>(std::llround(static_cast<double>(ev.sample - startTickSample_) / clockFollower_.samplesPerTick()));
                if (tick <= ticksSinceStart_ || tick % 24 != 0) { ticksSinceStart_ = std::max(ticksSinceStart_, tick); break; }
                ticksSinceStart_ = tick;
                const double theirs = tickBase_ + static_cast<double>(tick) / 24.0;
                const double ours = tempo_.beats() + static_cast<double>(ev.sample - start) * tempo_.bpm() / (60.0 * sr);
                if (std::fabs(theirs - ours) > 1e-4) tempo_.nudge(theirs - ours, 60.0 / tempo_.bpm());
            }
            break;
        }
        default: break;
        }
    }
    midiInCount_ = kept;
}

void Engine::applyClockPeer() noexcept {
    if (!clockPeer_) return;
    ClockPeerBlock b;
    b.sample = ctx_.blockStartSample;
    b.bpm = tempo_.bpm();
    b.beats = tempo_.beats();
    b.quantum = std::max(1, tempo_.beatsPerBar());
    b.lead = !clockPeerFollow_;
    const ClockPeerAnswer a = clockPeer_->block(b);
    if (a.bpm >= 20.0 && a.bpm <= 400.0 && std::fabs(a.bpm - tempo_.bpm()) > 1e-6) tempo_.jump(a.bpm);
    if (a.setPosition) {
        tempo_.setPosition(a.position);
        ++ctx_.clockEpoch;
    } else if (std::fabs(a.phaseError) > 1e-5) {
        tempo_.nudge(a.phaseError, 60.0 / tempo_.bpm());
    }
}

bool Engine::applyPads(const uint8_t* bytes, int64_t sample) noexcept {
    if (!pads_ || padsPaused_.load(std::memory_order_acquire)) return false;
    const uint8_t status = bytes[0], kind = status & 0xf0;
    if (kind != 0x80 && kind != 0x90 && kind != 0xb0 && kind != 0xc0) return false;
    // Keyed as SooperLooper keys them: a note off under its note on.
    const int keyStatus = kind == 0x80 ? (0x90 | (status & 0x0f)) : status;
    const uint8_t value = kind == 0xc0 ? 127 : bytes[2];
    auto [pads, count] = pads_->find((keyStatus << 8) | (bytes[1] & 0x7f));
    using K = midi::BoundAction::Kind;
    for (int p = 0; p < count; ++p) {
        midi::MidiPad& pad = pads[p];
        const midi::BoundAction a = midi::actionFor(pad.binding, status, value, pad.toggle);
        if (a.kind == K::None || a.kind == K::Set) continue;
        for (int t = 0; t < pad.numTargets; ++t) {
            midi::MidiPad::Target& target = pad.targets[t];
            bool fire = true;
            if (a.kind == K::Down) {
                target.downAt = sample;
                target.held = true;
            } else if (a.kind == K::Up || a.kind == K::UpForce) {
                // SooperLooper's hold rule: `up` releases only a press held 0.5 s or more.
                const bool wasHeld = target.held;
                target.held = false;
                const bool longPress = wasHeld && static_cast<double>(sample - target.downAt) >= 0.5 * config_.sampleRate;
                fire = pad.sustainable && (a.kind != K::Up || longPress) && (wasHeld || a.kind != K::Up);
            }
            if (!fire) continue;
            Command c;
            c.address = "/sl/#/hit";
            c.body = target.unit;
            execute(c);
        }
    }
    return count > 0;
}

void Engine::emitMidi(int64_t sample, uint8_t b0, uint8_t b1, uint8_t b2, uint8_t size) noexcept {
    if (midiOutCount_ == kMaxMidiOut) {
        midiDropped_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    midi::MidiEvent& e = midiOut_[midiOutCount_++];
    e.sample = sample;
    e.bytes[0] = b0;
    e.bytes[1] = b1;
    e.bytes[2] = b2;
    e.size = size;
}

void Engine::processInterleaved(const float* in, int inChannels, float* out, int outChannels, int numFrames) noexcept {
    const int B = config_.blockSize;
    const int ni = std::max(1, config_.numInputs);
    const int no = config_.numOutputs;
    // The timeline sample of this period's first output frame: through the block FIFO below the
    // output lags the input by one block.
    periodOutStart_ = (adaptFill_ == 0 && numFrames % B == 0) ? renderPos_ : renderPos_ - B + adaptFill_;
    if (clockPeer_) clockPeer_->period(periodOutStart_, config_.sampleRate, latencySamples() + config_.roundTripLatency / 2);
    if (adaptFill_ == 0 && numFrames % B == 0) {
        for (int f0 = 0; f0 < numFrames; f0 += B) {
            for (int c = 0; c < ni; ++c)
                for (int i = 0; i < B; ++i)
                    adaptIn_[static_cast<size_t>(c * B + i)] = in && c < inChannels ? in[(f0 + i) * inChannels + c] : 0.0f;
            process(adaptInPtr_.data(), adaptOutPtr_.data());
            for (int i = 0; i < B; ++i)
                for (int c = 0; c < outChannels; ++c)
                    out[(f0 + i) * outChannels + c] = c < no ? adaptOut_[static_cast<size_t>(c * B + i)] : 0.0f;
        }
        return;
    }
    // Periods that are not a multiple of the block: one block of latency through a FIFO.
    for (int f = 0; f < numFrames; ++f) {
        for (int c = 0; c < ni; ++c)
            adaptIn_[static_cast<size_t>(c * B + adaptFill_)] = in && c < inChannels ? in[f * inChannels + c] : 0.0f;
        for (int c = 0; c < outChannels; ++c)
            out[f * outChannels + c] = c < no ? adaptOut_[static_cast<size_t>(c * B + adaptFill_)] : 0.0f;
        if (++adaptFill_ == B) {
            adaptFill_ = 0;
            process(adaptInPtr_.data(), adaptOutPtr_.data());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands (audio thread)

void Engine::execute(Command& c) noexcept {
    std::visit(Overloaded{
                   [&](cmd::NewNode& m) { doNewNode(c, m); },
                   [&](cmd::SetParams& m) { doSetParams(c, m); },
                   [&](cmd::Ramp& m) { doRamp(c, m); },
                   [&](cmd::Free& m) { doFree(c, m); },
                   [&](cmd::Run& m) { doRun(c, m); },
                   [&](cmd::Move& m) { doMove(c, m); },
                   [&](cmd::Query& m) { doQuery(c, m); },
                   [&](cmd::ClearSched&) { doClearSched(); },
                   [&](cmd::GetParams& m) { doGetParams(c, m); },
                   [&](cmd::SetBus& m) { doSetBus(c, m); },
                   [&](cmd::GetBus& m) { doGetBus(c, m); },
                   [&](cmd::MapParam& m) { doMapParam(c, m); },
                   [&](cmd::Unit& m) { doUnit(c, m); },
                   [&](cmd::FreeAll& m) { doFreeAll(c, m); },
                   [&](cmd::QueryTree& m) { doQueryTree(c, m); },
                   [&](cmd::SwapBuffer& m) { doSwapBuffer(c, m); },
                   [&](cmd::Sync& m) { reply(c.client, reply::Synced{m.id}); },
                   [&](cmd::AttachRecorder& m) { doAttachRecorder(c, m); },
                   [&](cmd::DetachRecorder& m) { doDetachRecorder(c, m); },
                   [&](cmd::Tempo& m) {
                       tempo_.apply(m.mode, m.bpm, m.seconds, m.downSeconds);
                       ctx_.tempoBpm = tempo_.bpm(); // a jump holds from this sample, not the next segment
                   },
                   [&](cmd::Meter& m) { tempo_.setMeter(m.beatsPerBar); },
                   [&](cmd::Nudge& m) { tempo_.nudge(m.beats, m.seconds); },
                   [&](cmd::ClockSet& m) {
                       tempo_.setPosition(m.beats);
                       ++ctx_.clockEpoch;
                   },
                   [&](cmd::ClockReset&) {
                       tempo_.resetPosition();
                       ++ctx_.clockEpoch;
                       if (midiClockOut_) {
                           // Bar 1 begins here: Song Position 0, Start, and its first tick.
                           emitMidi(renderPos_, 0xf2, 0, 0, 3);
                           emitMidi(renderPos_, 0xfa);
                           emitMidi(renderPos_, 0xf8);
                           midiStartPending_ = false;
                       }
                   },
                   [&](cmd::MidiClockIn& m) { midiTempo_ = m.on; },
                   [&](cmd::ClockPeerOn& m) { clockPeer_ = m.peer; clockPeerFollow_ = m.follow; },
                   [&](cmd::MidiPads& m) {
                       if (pads_) release(Released{Released::What::MidiPads, pads_});
                       pads_ = m.table;
                       m.table = nullptr;
                   },
                   [&](cmd::MidiClockOut& m) {
                       if (m.on && !midiClockOut_) midiStartPending_ = true;
                       if (!m.on && midiClockOut_) emitMidi(renderPos_, 0xfc);
                       midiClockOut_ = m.on;
                   },
                   [&](cmd::StartGroup& m) { doStartGroup(c, m); },
                   [&](cmd::LoopGlobals& m) {
                       ctx_.loopers.sync.syncSource = m.syncSource;
                       if (ctx_.loopers.sync.anchorId != m.anchorId) ctx_.loopers.sync.cycleStamp = -1;
                       ctx_.loopers.sync.anchorId = m.anchorId;
                       ctx_.loopers.sync.eighthPerCycle = m.eighthPerCycle;
                       ctx_.loopers.sync.lenienceFrames = std::llround(m.lenienceSeconds * config_.sampleRate);
                       ctx_.loopers.sync.paMute = m.paMute;
                   },
               },
               c.body);
}

void Engine::doNewNode(Command& c, cmd::NewNode& m) noexcept {
    Node* node = m.node;
    const int32_t id = node->id();
    if (Node* old = nodes_.find(id)) {
        // A node fading out after a free no longer holds its id: scsynth frees at once, and
        // clients reuse ids at once (sclang's s.freeAll sends /g_freeAll 0 then /g_new 1).
        // It ends now, its fade cut short.
        if (old->state() != Node::State::Releasing && old->state() != Node::State::Ended) {
            fail(c, FailCode::NodeIdInUse, id);
            dispose(node);
            return;
        }
        if (old == root_ || (m.target == id) || [&] { for (Node* a = nodes_.find(m.target); a; a = a->parent) if (a == old) return true; return false; }()) {
            fail(c, FailCode::NodeIdInUse, id); // the new node would go inside what ends now
            dispose(node);
            return;
        }
        disposeSubtree(old);
        recomputeSolo();
    }
    Node* target = nodes_.find(m.target);
    if (!target) {
        fail(c, m.action == AddAction::Head || m.action == AddAction::Tail ? FailCode::GroupNotFound : FailCode::NodeNotFound, m.target);
        dispose(node);
        return;
    }
    if (m.action == AddAction::Replace && refuseOwned(c, target)) { dispose(node); return; }
    Group* parent = nullptr;
    switch (m.action) {
    case AddAction::Head:
    case AddAction::Tail:
        if (!target->isGroup()) { fail(c, FailCode::NotAGroup, m.target); dispose(node); return; }
        parent = static_cast<Group*>(target);
        break;
    default:
        if (target == root_) { fail(c, FailCode::NotAGroup, m.target); dispose(node); return; }
        parent = target->parent;
    }
    if (node->isGroup() && parent->depth + 1 >= kMaxDepth) { fail(c, FailCode::TreeTooDeep, id, kMaxDepth); dispose(node); return; }
    if (!nodes_.insert(id, node)) { fail(c, FailCode::TooManyNodes, nodes_.capacity()); dispose(node); return; }
    switch (m.action) {
    case AddAction::Head: parent->addToHead(node); break;
    case AddAction::Tail: parent->addToTail(node); break;
    case AddAction::Before: Group::insertBefore(node, target); break;
    case AddAction::After:
    case AddAction::Replace: Group::insertAfter(node, target); break;
    }
    if (node->isGroup()) {
        static_cast<Group*>(node)->depth = parent->depth + 1;
        ++numGroups_;
    }
    node->onInserted(ctx_, renderPos_);
    // Joining a node that already sounds: start in sync with it.
    if (node->startWith >= 0 && node->state() == Node::State::Pending) {
        Node* leader = nodes_.find(node->startWith);
        if (leader && leader->startedAt >= 0) {
            const int64_t at = leader->startedAt + std::llround(node->linkOffsetSeconds * config_.sampleRate);
            if (at >= renderPos_) node->scheduledStart = at;
            else {
                node->scheduledStart = renderPos_;
                node->skipFrames(static_cast<double>(renderPos_ - at), ctx_);
            }
        }
    }
    nodeEvent(NodeEventKind::Go, node);
    if (m.action == AddAction::Replace) target->release(ctx_, renderPos_);
    recomputeSolo();
}

void Engine::doSetParams(Command& c, cmd::SetParams& m) noexcept {
    Node* n = nodes_.find(m.id);
    if (!n) { fail(c, FailCode::NodeNotFound, m.id); return; }
    bool soloChanged = false;
    for (int i = 0; i < m.count; ++i) {
        const ParamValue& p = m.params[i];
        const SetResult r = n->setParam(p.id, p.value, 0, false, ctx_);
        if (r == SetResult::NoSuchParam) fail(c, FailCode::NoSuchParam, m.id, static_cast<int32_t>(n->kind()), p.id);
        else if (r == SetResult::BadValue) fail(c, FailCode::BadParamValue, m.id, 0, p.id, p.value);
        soloChanged |= p.id == ParamId::Solo;
    }
    if (soloChanged) recomputeSolo();
}

void Engine::doRamp(Command& c, cmd::Ramp& m) noexcept {
    Node* n = nodes_.find(m.id);
    if (!n) { fail(c, FailCode::NodeNotFound, m.id); return; }
    const int64_t samples = std::llround(static_cast<double>(m.seconds) * config_.sampleRate);
    const SetResult r = n->setParam(m.param, m.target, samples, true, ctx_);
    if (r == SetResult::NoSuchParam) fail(c, FailCode::NoSuchParam, m.id, static_cast<int32_t>(n->kind()), m.param);
    else if (r == SetResult::BadValue) fail(c, FailCode::BadParamValue, m.id, 0, m.param, m.target);
    else if (r == SetResult::NotRampable) fail(c, FailCode::NotRampable, m.id, 0, m.param);
}

namespace {
// The first node in n's subtree (n included) that a namespace owns, or null.
Node* ownedWithin(Node* n) noexcept {
    if (n->owner != Node::Owner::Tree) return n;
    if (!n->isGroup()) return nullptr;
    for (Node* k = static_cast<Group*>(n)->head; k; k = k->next)
        if (Node* o = ownedWithin(k)) return o;
    return nullptr;
}
} // namespace

bool Engine::refuseOwned(Command& c, Node* n) noexcept {
    Node* o = ownedWithin(n);
    if (!o) return false;
    if (o == n) fail(c, FailCode::OwnedNode, n->id(), static_cast<int32_t>(n->owner));
    else fail(c, FailCode::HoldsOwnedNode, n->id(), o->id(), ParamId::Count, static_cast<float>(o->owner));
    return true;
}

void Engine::doFree(Command& c, cmd::Free& m) noexcept {
    if (m.id == 0) { fail(c, FailCode::CannotFreeRoot); return; }
    Node* n = nodes_.find(m.id);
    if (!n) { fail(c, FailCode::NodeNotFound, m.id); return; }
    if (!m.byOwner && refuseOwned(c, n)) return;
    n->release(ctx_, renderPos_);
}

void Engine::releaseChildren(Group* g, bool deep) noexcept {
    for (Node* k = g->head; k; k = k->next) { // a release only fades: the links stay until it ends
        if (k->owner != Node::Owner::Tree) continue;
        if (k->isGroup() && (deep || ownedWithin(k))) releaseChildren(static_cast<Group*>(k), deep);
        else k->release(ctx_, renderPos_);
    }
}

void Engine::doRun(Command& c, cmd::Run& m) noexcept {
    Node* n = nodes_.find(m.id);
    if (!n) { fail(c, FailCode::NodeNotFound, m.id); return; }
    if (n == root_) { fail(c, FailCode::CannotFreeRoot); return; }
    const bool wasAudible = n->audible();
    n->setRunning(m.run, ctx_);
    if (wasAudible != m.run) nodeEvent(m.run ? NodeEventKind::On : NodeEventKind::Off, n);
}

void Engine::doMove(Command& c, cmd::Move& m) noexcept {
    Node* n = nodes_.find(m.id);
    if (!n) { fail(c, FailCode::NodeNotFound, m.id); return; }
    Node* t = nodes_.find(m.target);
    if (!t) { fail(c, FailCode::NodeNotFound, m.target); return; }
    if (n == root_ || t == root_) { fail(c, FailCode::NotAGroup, n == root_ ? m.id : m.target); return; }
    if (n == t) return;
    for (Node* a = t->parent; a; a = a->parent)
        if (a == n) { fail(c, FailCode::MoveIntoSelf, m.id, m.target); return; }
    Group::unlink(n);
    if (m.after) Group::insertAfter(n, t); else Group::insertBefore(n, t);
    if (n->isGroup()) static_cast<Group*>(n)->depth = n->parent->depth + 1;
    nodeEvent(NodeEventKind::Move, n);
    recomputeSolo();
}

void Engine::doQuery(Command& c, cmd::Query& m) noexcept {
    Node* n = nodes_.find(m.id);
    if (!n) { fail(c, FailCode::NodeNotFound, m.id); return; }
    nodeEvent(NodeEventKind::Info, n, c.client, m.trace);
}

void Engine::handBackPayload(Command& c) noexcept {
    std::visit([&](auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, cmd::NewNode>) dispose(b.node);
        else if constexpr (std::is_same_v<T, cmd::SwapBuffer>) {
            if (b.data) release(Released{Released::What::Buffer, b.data});
            reply(c.client, reply::BufferSwapped{b.bufnum, b.address, b.completion, false});
        }
        else if constexpr (std::is_same_v<T, cmd::QueryTree>) { b.snapshot->dropped = true; reply(c.client, reply::TreeReady{b.snapshot}); }
        else if constexpr (std::is_same_v<T, cmd::Unit>) {
            if (b.buffer) {
                if (b.bufferIsSave) b.buffer->numFrames = -1; // the copy did not happen
                handBackBuffer(b.buffer, b.id, b.bufferIsSave);
            }
            if (b.voice) release(Released{Released::What::Voice, b.voice});
        }
        else if constexpr (std::is_same_v<T, cmd::AttachRecorder>) release(Released{Released::What::Rejected, b.slot});
    }, c.body);
}

void Engine::doClearSched() noexcept {
    for (int i = 0; i < heapSize_; ++i) {
        Scheduled& s = heap_[static_cast<size_t>(i)];
        if (std::holds_alternative<cmd::Tempo>(s.cmd.body)) forecast_.remove(s.seq);
        handBackPayload(s.cmd);
    }
    heapSize_ = 0;
    numPreRolls_ = 0;
}

void Engine::doGetParams(Command& c, cmd::GetParams& m) noexcept {
    Node* n = nodes_.find(m.id);
    if (!n) { fail(c, FailCode::NodeNotFound, m.id); return; }
    reply::ParamValues v{};
    v.id = m.id;
    for (int i = 0; i < m.count; ++i) {
        float x = 0.0f;
        if (!n->getParam(m.params[i], x)) { fail(c, FailCode::NoSuchParam, m.id, static_cast<int32_t>(n->kind()), m.params[i]); return; }
        v.params[v.count] = m.params[i];
        v.values[v.count++] = x;
    }
    reply(c.client, v);
}

void Engine::doSetBus(Command& c, cmd::SetBus& m) noexcept {
    if (m.first < 0 || m.first + m.count > config_.numControlBuses) { fail(c, FailCode::BusOutOfRange, m.first, config_.numControlBuses); return; }
    for (int i = 0; i < m.count; ++i) buses_[static_cast<size_t>(m.first + i)].store(m.values[i], std::memory_order_relaxed);
}

void Engine::doGetBus(Command& c, cmd::GetBus& m) noexcept {
    if (m.first < 0 || m.first + m.count > config_.numControlBuses) { fail(c, FailCode::BusOutOfRange, m.first, config_.numControlBuses); return; }
    reply::BusValues v{};
    v.first = m.first;
    v.count = m.count;
    v.asSetn = m.asSetn;
    for (int i = 0; i < m.count; ++i) v.values[i] = buses_[static_cast<size_t>(m.first + i)].load(std::memory_order_relaxed);
    reply(c.client, v);
}

void Engine::doMapParam(Command& c, cmd::MapParam& m) noexcept {
    Node* n = nodes_.find(m.id);
    if (!n) { fail(c, FailCode::NodeNotFound, m.id); return; }
    if (m.bus >= config_.numControlBuses) { fail(c, FailCode::BusOutOfRange, m.bus, config_.numControlBuses); return; }
    for (int i = 0; i < n->numBusMaps; ++i) {
        if (n->busMaps[i].param != m.param) continue;
        if (m.bus < 0) { n->busMaps[i] = n->busMaps[--n->numBusMaps]; --busMaps_; }
        else n->busMaps[i] = Node::BusMap{m.param, m.bus, std::numeric_limits<float>::quiet_NaN()};
        return;
    }
    if (m.bus < 0) return;
    float probe = 0.0f;
    if (!n->getParam(m.param, probe)) { fail(c, FailCode::NoSuchParam, m.id, static_cast<int32_t>(n->kind()), m.param); return; }
    if (n->numBusMaps == Node::kMaxBusMaps) { fail(c, FailCode::TooManyMaps, m.id, Node::kMaxBusMaps); return; }
    n->busMaps[n->numBusMaps++] = Node::BusMap{m.param, m.bus, std::numeric_limits<float>::quiet_NaN()};
    ++busMaps_;
}

void Engine::applyBusMaps() noexcept {
    if (busMaps_ == 0) return;
    nodes_.forEach([&](Node* n) {
        for (int i = 0; i < n->numBusMaps; ++i) {
            Node::BusMap& bm = n->busMaps[i];
            const float v = buses_[static_cast<size_t>(bm.bus)].load(std::memory_order_relaxed);
            if (v == bm.last) continue;
            bm.last = v;
            n->setParam(bm.param, v, 0, false, ctx_); // de-clicked like /n_set; out of range: ignored
        }
    });
}

void Engine::doFreeAll(Command& c, cmd::FreeAll& m) noexcept {
    Node* n = nodes_.find(m.group);
    if (!n) { fail(c, FailCode::GroupNotFound, m.group); return; }
    if (!n->isGroup()) { fail(c, FailCode::NotAGroup, m.group); return; }
    releaseChildren(static_cast<Group*>(n), m.deep);
}

void Engine::doQueryTree(Command& c, cmd::QueryTree& m) noexcept {
    TreeSnapshot* s = m.snapshot;
    Node* n = nodes_.find(s->rootId);
    if (!n || !n->isGroup()) {
        s->found = false;
        reply(c.client, reply::TreeReady{s});
        return;
    }
    const size_t cap = s->entries.capacity();
    if (s->full) {
        s->bpm = tempo_.bpm();
        s->beats = tempo_.beats();
        s->beatsPerBar = tempo_.beatsPerBar();
    }
    // Depth-first, pre-order, without recursion and without growing the vector.
    Node* cur = n;
    while (cur) {
        if (s->entries.size() >= cap) { s->truncated = true; break; }
        TreeSnapshot::Entry e{};
        e.id = cur->id();
        e.kind = static_cast<uint8_t>(cur->kind());
        e.numChildren = cur->isGroup() ? static_cast<Group*>(cur)->numChildren() : -1;
        float v = -1.0f;
        e.buf = cur->getParam(ParamId::Buf, v) ? static_cast<int32_t>(v) : -1;
        e.gain = cur->getParam(ParamId::Gain, v) ? v : 1.0f;
        s->entries.push_back(e); // within reserved capacity: no allocation
        if (s->full && s->nodes.size() < s->nodes.capacity()) {
            TreeSnapshot::NodeState ns{};
            ns.type = cur->typeName();
            ns.owner = static_cast<uint8_t>(cur->owner);
            ns.paused = cur->state() == Node::State::Paused || cur->state() == Node::State::Pausing;
            ns.held = cur->held;
            static_assert(static_cast<int>(ParamId::Count) <= 64, "NodeState::values holds every parameter");
            for (int p = 0; p < static_cast<int>(ParamId::Count); ++p)
                if (float pv = 0.0f; cur->getParam(static_cast<ParamId>(p), pv)) {
                    ns.has |= uint64_t{1} << p;
                    ns.values[p] = pv;
                }
            s->nodes.push_back(ns);
        }
        if (cur->isGroup() && static_cast<Group*>(cur)->head) { cur = static_cast<Group*>(cur)->head; continue; }
        while (cur && cur != n && !cur->next) cur = cur->parent;
        cur = (cur && cur != n) ? cur->next : nullptr;
    }
    reply(c.client, reply::TreeReady{s});
}

void Engine::doSwapBuffer(Command& c, cmd::SwapBuffer& m) noexcept {
    BufferData*& slot = buffers_[static_cast<size_t>(m.bufnum)];
    BufferData* old = slot;
    slot = m.data;
    numLoadedBuffers_ += (m.data ? 1 : 0) - (old ? 1 : 0);
    if (old) release(Released{Released::What::Buffer, old});
    reply(c.client, reply::BufferSwapped{m.bufnum, m.address, m.completion, m.announce});
}

void Engine::doAttachRecorder(Command& c, cmd::AttachRecorder& m) noexcept {
    if (m.group != 0) {
        Node* n = nodes_.find(m.group);
        if (!n || !n->isGroup()) {
            fail(c, FailCode::RecorderGroupNotFound, m.group);
            release(Released{Released::What::Rejected, m.slot});
            return;
        }
    }
    if (m.group == 0) m.slot->skipFrames = limiter_.latencySamples(); // master tap: post-limiter
    for (RecordSlot*& s : recorders_) {
        if (!s) { s = m.slot; reply(c.client, reply::Done{c.address, m.slot->id, true}); return; }
    }
    fail(c, FailCode::RecorderSlotsFull, kMaxRecorders);
    release(Released{Released::What::Rejected, m.slot});
}

void Engine::doStartGroup(Command& c, cmd::StartGroup& m) noexcept {
    for (int i = 0; i < m.count; ++i)
        if (!nodes_.find(m.ids[i])) { fail(c, FailCode::NodeNotFound, m.ids[i]); return; }
    for (GroupStart& g : groupStarts_) {
        if (g.active) continue;
        g.active = true;
        g.count = std::min(m.count, 8);
        for (int i = 0; i < g.count; ++i) g.ids[i] = m.ids[i];
        g.deadline = renderPos_ + std::llround(m.waitSeconds * config_.sampleRate);
        g.client = c.client;
        g.address = c.address;
        serviceGroupStarts(); // starts at this very sample when everything is ready
        return;
    }
    fail(c, FailCode::GroupStartsFull, 8);
}

void Engine::serviceGroupStarts() noexcept {
    for (GroupStart& g : groupStarts_) {
        if (!g.active) continue;
        bool allReady = true;
        for (int i = 0; i < g.count; ++i) {
            Node* n = nodes_.find(g.ids[i]);
            if (n && !n->readyToStart(ctx_)) allReady = false;
        }
        const bool timedOut = renderPos_ >= g.deadline;
        if (!allReady && !timedOut) continue;
        // Everything ready (or waited long enough): one sample for all.
        for (int i = 0; i < g.count; ++i) {
            Node* n = nodes_.find(g.ids[i]);
            if (!n || n->state() != Node::State::Pending) continue;
            n->held = false;
            if (n->readyToStart(ctx_)) n->begin(ctx_, renderPos_);
            // else: no longer held, it starts by itself when its buffer arrives
        }
        if (!allReady) {
            reply(g.client, reply::Fail{g.address, FailCode::GroupStartTimedOut, 0, 0, ParamId::Count, 0.0f});
            rtLog(3, "/start_group: not every deck finished loading in time; started the ready ones at sample ", renderPos_);
        } else {
            reply(g.client, reply::Done{g.address, 0, false});
        }
        g.active = false;
    }
}

void Engine::doDetachRecorder(Command& c, cmd::DetachRecorder& m) noexcept {
    bool any = false;
    for (RecordSlot*& s : recorders_) {
        if (s && (m.slotId < 0 || s->id == m.slotId)) {
            release(Released{Released::What::Recording, s, 0, c.client});
            s = nullptr;
            any = true;
        }
    }
    // The server closing whatever runs (shutdown, end of nrt) is not a failure when nothing does.
    if (!any && !(m.slotId < 0 && c.client == kNoClient)) fail(c, FailCode::RecorderNotFound, m.slotId);
}

} // namespace loopd
