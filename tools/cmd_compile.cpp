// `flashplan compile MODEL.gguf --profile DEVICE.yaml -o PLAN.fplan`: plan a model for a
// device (planner/compile/compile.h). Reads only the GGUF header, so header-only files
// from `flashplan synth --header-only` work, and no GPU is needed.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>

#include "ops/core/error.h"
#include "planner/compile/compile.h"
#include "planner/plan_io/plan_io.h"
#include "tools/command.h"

namespace {

struct Args {
  std::string model, profile, out, mtp;
  uint64_t max_context = 0, cost_context = 0;
  std::string numerics = "official";
  std::string kv_dtype;  // "": the numerics' default
  std::string buckets = "16,128,512,2048";
  uint32_t mtp_depth = 1;
  bool no_offload = false, fit_context = false, inexact_parallel = false, no_pdl = false, quiet = false;
  std::vector<std::string> overrides;
};

std::vector<uint32_t> parse_buckets(const std::string& s) {
  std::vector<uint32_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const unsigned long v = std::strtoul(item.c_str(), &end, 10);
    if (item.empty() || *end || v == 0 || v > (1u << 20))
      fp::fail("--prefill-buckets '", s, "': '", item, "' is not a token count; expected ascending counts such as 16,128,512,2048");
    out.push_back(static_cast<uint32_t>(v));
  }
  if (out.empty()) fp::fail("--prefill-buckets '", s, "': empty; expected counts such as 16,128,512,2048");
  return out;
}

int run(const Args& a) {
  fp::CompileOptions o;
  o.max_context = a.max_context;
  o.cost_context = a.cost_context;
  const auto numerics = fp::numerics_from_name(a.numerics);
  if (!numerics) fp::fail("--numerics ", a.numerics, ": expected official or plain");
  o.numerics = *numerics;
  if (a.kv_dtype == "f32") o.kv_dtype = fp::DType::F32;
  else if (a.kv_dtype == "f16") o.kv_dtype = fp::DType::F16;
  else if (!a.kv_dtype.empty()) fp::fail("--kv-dtype ", a.kv_dtype, ": expected f32 or f16");
  o.prefill_buckets = parse_buckets(a.buckets);
  o.mtp_depth = a.mtp_depth;
  o.allow_offload = !a.no_offload;
  o.fit_context = a.fit_context;
  o.exact_parallel = !a.inexact_parallel;
  o.pdl = !a.no_pdl;
  for (const auto& s : a.overrides) o.overrides.push_back(fp::parse_override(s));
  o.model_file = std::filesystem::path(a.model).filename().string();
  if (!a.mtp.empty()) o.mtp_file = std::filesystem::path(a.mtp).filename().string();

  const fp::DeviceProfile profile = fp::load_device_profile(a.profile);
  fp::ModelOpenOptions mo;
  mo.mtp_path = a.mtp;
  mo.allow_header_only = true;
  const fp::Model model = fp::Model::open(a.model, mo);
  for (const auto& w : model.warnings()) std::fprintf(stderr, "flashplan compile: warning: %s\n", w.c_str());

  const auto plan = fp::compile_plan(model, profile, o);
  const std::vector<uint8_t> bytes = fp::serialize_plan(*plan);
  fp::write_plan_file(a.out, bytes);
  if (!a.quiet) {
    double decode_us = 0;
    for (const auto& ph : plan->phases)
      if (ph->kind == fp::plan::PhaseKind::decode) decode_us = ph->predicted_us;
    const auto& m = *plan->memory;
    std::printf("wrote %s (%zu bytes): %s on %s, max context %llu, %s numerics\n", a.out.c_str(), bytes.size(),
                o.model_file.c_str(), profile.name.c_str(),
                static_cast<unsigned long long>(plan->provenance->options->max_context), a.numerics.c_str());
    std::printf("memory: %.2f GiB of %.2f GiB usable; %s\n", m.total_device_bytes / 1073741824.0,
                m.usable_bytes / 1073741824.0, m.note.c_str());
    std::printf("predicted decode step: %.1f us (%.1f tokens/s)\n", decode_us, decode_us > 0 ? 1e6 / decode_us : 0.0);
    if (!model.mtp_notice().empty()) std::printf("note: %s\n", model.mtp_notice().c_str());
  }
  return 0;
}

}  // namespace

FP_COMMAND("compile", "Plan a GGUF model for a device profile (no GPU needed; header-only GGUFs work)", [](CLI::App& app) {
  auto a = std::make_shared<Args>();
  app.add_option("model", a->model, "Model GGUF (a header-only file is enough)")->required();
  app.add_option("--profile", a->profile, "Device profile YAML (plans/devices/*.yaml)")->required();
  app.add_option("-o,--output", a->out, "Plan file to write (.fplan)")->required();
  app.add_option("--max-context", a->max_context,
                 "Tokens of context the KV cache is sized for (default: min(model context, 262144))");
  app.add_option("--numerics", a->numerics, "official (FP8 KV + indexer FP4 round trips) or plain (none)");
  app.add_option("--kv-dtype", a->kv_dtype,
                 "KV cache storage: f32 or f16 (default: f16 with official numerics, whose stored rows are F16 "
                 "values already; f32 with plain)");
  app.add_option("--prefill-buckets", a->buckets, "Upper bounds of the prefill chunk-size buckets");
  app.add_option("--mtp", a->mtp, "Separate MTP GGUF (antirez layout, mtp.0.*)");
  app.add_option("--mtp-depth", a->mtp_depth, "Draft tokens per MTP step (verify runs depth + 1 tokens)")
      ->check(CLI::Range(1, 8));
  app.add_option("--cost-context", a->cost_context, "Context length predicted times assume (default min(max, 8192))");
  app.add_flag("--no-offload", a->no_offload, "Never put weights in host memory; fail instead");
  app.add_flag("--fit-context", a->fit_context, "Lower the max context until the model fits instead of offloading");
  app.add_flag("--inexact-parallel", a->inexact_parallel,
               "Several GPUs: let the cost model also split attention, the shared expert and the head over the GPUs "
               "(partial sums added in NCCL's order, not bit-identical to one GPU; the CUDA executor does not run "
               "such plans yet). Default: those replicated, routed experts split");
  app.add_flag("--no-pdl", a->no_pdl,
               "No programmatic dependent launch: every kernel starts after the previous one ends (default: every "
               "kernel but the cuBLAS GEMM and NCCL overlaps the previous one on compute capability 9.0+)");
  app.add_option("--override", a->overrides, "PATTERN=KERNEL: force a kernel on matching nodes (repeatable)");
  app.add_flag("-q,--quiet", a->quiet, "Print nothing on success");
  return [a]() { return run(*a); };
});
