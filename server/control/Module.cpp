// The services a module may use (Module.h): each forwards to the Controller.
#include "server/control/Module.h"

#include "server/control/Controller.h"

#include <sstream>

#include "server/control/Buffers.h"
#include "server/control/Nodes.h"

namespace loopd {

std::string formatNumber(float v) {
    std::ostringstream s;
    s << v;
    return s.str();
}

Module::Module(Controller& c)
    : controller_(c), engine_(c.engine_), worker_(c.worker_), options_(c.options_), paramCtx_(c.paramCtx_) {}

void Module::route(const char* address, bool prefix, std::function<void(Msg&)> handler) {
    controller_.route(address, prefix, std::move(handler));
}

bool Module::push(Msg& m, CommandBody&& body) { return controller_.push(m, std::move(body)); }
bool Module::pushFromWorker(uint16_t client, const char* address, uint64_t timetag, CommandBody&& body) {
    return controller_.pushFromWorker(client, address, timetag, std::move(body));
}
void Module::finishAsync(uint16_t client, const char* address, int32_t id, uint32_t completion) {
    controller_.finishAsync(client, address, id, completion);
}
void Module::failAsync(uint16_t client, const char* address, const std::string& reason, uint32_t completion) {
    controller_.failAsync(client, address, reason, completion);
}
void Module::dropCompletion(uint32_t completion) { controller_.dropCompletion(completion); }
void Module::nodeCreated(Msg& m, Node& node) { controller_.nodeCreated(m, node); }
void Module::send(uint16_t client, const osc::MessageBuilder& m) { controller_.send(client, m); }
void Module::sendTo(const osc::Endpoint& to, const osc::MessageBuilder& m) {
    const auto bytes = m.bytes();
    if (controller_.sender_) controller_.sender_(to, bytes.data(), bytes.size());
}
void Module::runInternal(const osc::MessageBuilder& m) { controller_.runInternal(m.bytes()); }

void Module::broadcast(const osc::MessageBuilder& m) { controller_.broadcast(m); }
void Module::fail(uint16_t client, const char* address, const std::string& reason) { controller_.fail(client, address, reason); }
void Module::done(uint16_t client, const char* address, std::initializer_list<int32_t> ids) { controller_.done(client, address, ids); }
int32_t Module::bufnum(Msg& m) { return controller_.buffers_->bufnum(m); }
std::string Module::checkedPath(Msg& m, const std::string& path, bool forWriting) {
    return controller_.checkedPath(m, path, forWriting);
}
std::string Module::checkedDirectory(Msg& m, const std::string& path, bool forWriting) {
    return controller_.checkedPath(m, path, forWriting, PathPolicy::Kind::Directory);
}
LoadOptions Module::loadOptions(const std::string& what) { return controller_.buffers_->loadOptions(what); }
void Module::applyParams(Msg& m, Node& node) { controller_.nodes_->applyParams(m, node); }
NodeSetup Module::nodeSetup() { return controller_.nodeSetup(); }
void Module::loadBuffer(Msg& m, int32_t b, const std::string& path, const char* address) {
    controller_.buffers_->loadBuffer(m, b, path, address);
}
void Module::loadBufferWith(Msg& m, int32_t b, const char* address, std::function<std::unique_ptr<BufferData>()> make) {
    controller_.buffers_->loadBufferWith(m, b, address, std::move(make));
}
std::string Module::pathProblem(const std::string& path) const { return controller_.paths_.check(path, false); }
bool Module::bufferKnown(int32_t b) { return controller_.buffers_->bufferKnown(b); }
void Module::freeBuffers(uint16_t client, const char* address, std::function<bool(int32_t)> which) {
    controller_.buffers_->freeBuffers(client, address, std::move(which));
}
void Module::swapBuffer(uint16_t client, const char* address, int32_t b, std::unique_ptr<BufferData> data) {
    controller_.buffers_->swapBuffer(client, address, b, std::move(data));
}
double Module::seconds(osc::ArgReader& args, const char* what) {
    const float v = args.number(what);
    if (v < 0.0f || v > 86400.0f) throw osc::ArgError(std::string(what) + " must be 0..86400 seconds, got " + std::to_string(v));
    return v;
}
MemoryBudget& Module::budget() { return controller_.budget_; }
StretchWorker* Module::stretchWorker() { return controller_.stretchWorker_; }
const std::string& Module::hostUrl() const { return controller_.hostUrl_; }
float Module::defaultStretch() const { return controller_.defaultStretch_; }

} // namespace loopd
