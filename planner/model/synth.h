// `flashplan synth`: DS4-layout GGUFs with random but valid weights, at any scale.
//
// A synth model is a ModelConfig (from a preset, then overridden field by field), a
// dtype per tensor role and a seed. Its tensor table is exactly expected_tensors() of
// the config, so whatever synth writes the validator accepts, and the `full` preset's
// table equals the real q2 file's (TENSORS.tsv). Weights are deterministic for a seed:
// every 64 Ki-element chunk of every tensor has its own RNG stream keyed by (seed,
// tensor name, chunk), so chunks fill in parallel in any order with the same bytes.
//
// "Valid" means (MODEL.md §5, the HF oracle's init): matrices N(0, 1/fan_in) in
// effective (dequantised) value, embeddings N(0, 1), norm weights 1 + N(0, 0.1), sinks
// N(0, 1), compressor ape N(0, 0.5), HC base N(0, 0.5) and scale U(0.5, 1.5), router
// bias N(0, 0.2), tid2eid = distinct random experts per token; finite f16 scales in
// every quantised block. Normal samples are Irwin-Hall(4) (bounded at ±3.5σ), which is
// what keeps every f16 scale finite.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ops/quant/types.h"
#include "planner/model/config.h"
#include "planner/model/tensors.h"

namespace fp {

// Bumped whenever the bytes synth writes for a given (preset, seed) change, so that
// cached built-in models regenerate.
inline constexpr uint32_t kSynthVersion = 2;  // 2: tiny routed experts all Q8_0

// Dtype per tensor role. Vectors are always F32 and tid2eid I32; matrices take
// roles["mtp.<role>"] in the MTP block, else roles[role], else `matrix`.
struct DTypePlan {
  std::map<std::string, DType> roles;
  DType matrix = DType::F32;
  DType lookup(const TensorSpec& s, uint32_t n_layer) const;
  // "ROLE=TYPE" (ROLE may be "mtp.ROLE"); "all=TYPE" makes every matrix TYPE.
  void apply(std::string_view assignment);
};

struct SynthConfig {
  std::string preset;  // "tiny" | "full"
  ModelConfig model;   // model.mtp = the MTP layout to write
  DTypePlan dtypes;
  uint64_t seed = 1;
};

// The presets. tiny: a few MB, 6 layers (SWA, SWA, CSA, HCA, CSA, HCA), 3 hash-routed
// layers, 8 experts, in-file MTP, 512-token BPE vocabulary, F32/F16/Q8_0 only. full:
// the real Flash shapes and the antirez q2 dtype mix, no MTP (its own file, if asked).
SynthConfig synth_preset(std::string_view name);

// Re-derives the per-layer arrays after n_layer, the number of leading SWA layers or
// the HCA ratio change: SWA first, then CSA (ratio 4) and HCA alternating, as Flash.
void set_layer_pattern(ModelConfig& m, uint32_t n_layer, uint32_t n_swa, uint32_t hca_ratio);

// One tensor to write.
struct SynthTensor {
  TensorSpec spec;
  DType type = DType::F32;
  uint64_t n_bytes = 0;
};
// The main file's tensors (mtp_file = false) or the separate MTP file's (true).
std::vector<SynthTensor> synth_tensors(const SynthConfig& s, bool mtp_file);

// Checks the config can be written (dimensions consistent, every dtype fits its row
// length and synth can produce it); throws fp::Error naming the problem.
void check_synth_config(const SynthConfig& s);

// Writes tensor t's bytes into dst (dst.size() == t.n_bytes); deterministic for
// (s.seed, t.spec.name) whatever the thread count. Uses fp::parallel_for.
void synth_fill(const SynthConfig& s, const SynthTensor& t, std::span<uint8_t> dst);

// The target standard deviation of a matrix's dequantised values (1/sqrt(fan_in)
// with fan_in = ne0, except embeddings: 1). Exposed for tests.
float synth_matrix_sigma(const TensorSpec& spec);

struct SynthWriteOptions {
  std::string path;
  std::string mtp_path;      // separate MTP layout: where mtp.0.* goes (default PATH stem + "-mtp.gguf")
  bool header_only = false;
  bool progress = false;     // progress bar with GB/s on stderr
};
struct SynthResult {
  std::string path, mtp_path;  // mtp_path empty unless written
  uint64_t bytes = 0;          // file bytes written (both files)
  double seconds = 0;
};
// Writes the model (and the MTP file for the separate layout), then re-opens it and
// checks read_model_config + validation accept it.
SynthResult write_synth(const SynthConfig& s, const SynthWriteOptions& o);

// The deterministic byte-level BPE vocabulary synth writes (tokenizer.ggml.*).
struct SynthVocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;         // llama.cpp token types: 1 normal, 3 control, 5 unused
  std::vector<std::string> merges;    // "A B", rank = index
  uint32_t bos = 0, eos = 1;
};
// n_vocab tokens: the DS4 special tokens (at their real ids when n_vocab is Flash's
// size, else BOS 0, EOS 1 and the rest at the end), the 256 GPT-2 byte symbols,
// merges learned from a built-in text, then unused placeholders.
SynthVocab synth_vocab(uint32_t n_vocab);
const std::vector<std::string>& ds4_special_tokens();  // BOS and EOS first

}  // namespace fp
