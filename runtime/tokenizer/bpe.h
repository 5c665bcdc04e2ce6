// Byte-pair merging over token ids. Merges are ranked by their index in
// tokenizer.ggml.merges (lower merges first); among equal ranks the leftmost pair
// merges first, as in Hugging Face `tokenizers` and llama.cpp. A heap with lazy
// invalidation keeps long pieces (e.g. whitespace runs) at O(n log n).
#pragma once
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace fp {

class BpeMerges {
 public:
  // rank: index in the merge list; result: id of the merged token.
  void add(int32_t left, int32_t right, int32_t rank, int32_t result);
  size_t size() const { return table_.size(); }

  // Merges `symbols` (token ids of a piece's bytes) and appends the result to `out`.
  void apply(std::span<const int32_t> symbols, std::vector<int32_t>& out) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t key(int32_t l, int32_t r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }
  const Merge* find(int32_t l, int32_t r) const;
  std::unordered_map<uint64_t, Merge> table_;
};

}  // namespace fp
