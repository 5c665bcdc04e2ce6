// `flashplan logits MODEL.gguf --tokens 0,17,42 -o OUT.f32`: the logits at every
// position of a token sequence, [n_tokens][n_vocab] little-endian float32, from the
// CPU reference executor. --chunk splits the prefill into steps (the result does not
// change: chunking is bit-exact); --numerics picks plain (as transformers) or official.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "ops/core/error.h"
#include "tools/command.h"
#include "tools/engine_args.h"

namespace {

std::vector<int32_t> parse_tokens(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string item = s.substr(i, j - i);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) {
      size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != item.size() || v < 0 || v > INT32_MAX)
        fp::fail("--tokens: '", item, "' is not a token id, expected comma-separated ids like 0,17,42");
      ids.push_back(int32_t(v));
    }
    i = j + 1;
  }
  return ids;
}

}  // namespace

FP_COMMAND("logits", "Logits at every position of a token sequence (CPU reference executor)", [](CLI::App& app) {
  struct Opts {
    fp::cli::EngineArgs engine;
    std::string tokens, out, check_against;
  };
  auto o = std::make_shared<Opts>();
  o->engine.add(app, false);
  app.add_option("--tokens", o->tokens, "comma-separated token ids")->required();
  app.add_option("-o,--output", o->out, "output file: [n_tokens][n_vocab] float32")->required();
  app.add_option("--check-against", o->check_against,
                 "with --backend cuda: compare every layer's stream and the logits with the CPU reference "
                 "executor and name the first node beyond its bound (exit 1)")
      ->check(CLI::IsMember({"cpu"}));
  return [o]() {
    const std::vector<int32_t> ids = parse_tokens(o->tokens);
    if (ids.empty()) fp::fail("--tokens: no token ids given");
    o->engine.ctx = std::max<int64_t>(o->engine.ctx, int64_t(ids.size()));
    bool parity_ok = true;
    if (!o->check_against.empty()) {
      if (o->engine.backend != "cuda") fp::fail("--check-against cpu needs --backend cuda");
      if (!o->engine.plan.empty())
        fp::fail("--check-against cpu: runs both executors without a plan; leave --plan out");
#ifdef FLASHPLAN_HAVE_CUDA
      parity_ok = fp::cli::check_cuda_against_cpu(o->engine.cuda_args(), ids);
#endif
    }
    auto engine = o->engine.open();
    const int64_t V = engine->config().n_vocab;
    for (int32_t id : ids)
      if (id >= V) fp::fail("--tokens: id ", id, " outside the vocabulary [0, ", V, ")");
    auto session = engine->new_session();
    const auto logits = session->append_all(ids);
    std::ofstream f(o->out, std::ios::binary);
    if (!f) fp::fail(o->out, ": cannot open for writing");
    f.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * sizeof(float)));
    if (!f) fp::fail(o->out, ": write failed");
    std::fprintf(stderr, "wrote %zu x %lld logits (%s numerics) to %s\n", ids.size(), (long long)V,
                 o->engine.numerics.c_str(), o->out.c_str());
    return parity_ok ? 0 : 1;
  };
});
