// The BPE merge loop (see bpe.h).
#include "runtime/tokenizer/bpe.h"

#include <algorithm>
#include <queue>

namespace fp {

void BpeMerges::add(int32_t left, int32_t right, int32_t rank, int32_t result) {
  // A pair listed twice keeps its first (lowest) rank.
  table_.try_emplace(key(left, right), Merge{rank, result});
}

const BpeMerges::Merge* BpeMerges::find(int32_t l, int32_t r) const {
  const auto it = table_.find(key(l, r));
  return it == table_.end() ? nullptr : &it->second;
}

void BpeMerges::apply(std::span<const int32_t> symbols, std::vector<int32_t>& out) const {
  const int n = static_cast<int>(symbols.size());
  if (n <= 1) {
    out.insert(out.end(), symbols.begin(), symbols.end());
    return;
  }
  struct Sym {
    int32_t id;
    int prev, next;  // -1 at the ends; a merged-away symbol has id -1
  };
  std::vector<Sym> sym(n);
  for (int i = 0; i < n; ++i) sym[i] = Sym{symbols[i], i - 1, i + 1 < n ? i + 1 : -1};

  struct Cand {
    int32_t rank;
    int left, right;
    int32_t left_id, right_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  const auto push = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    if (const Merge* m = find(sym[l].id, sym[r].id)) heap.push(Cand{m->rank, l, r, sym[l].id, sym[r].id});
  };
  for (int i = 0; i + 1 < n; ++i) push(i, i + 1);

  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& l = sym[c.left];
    Sym& r = sym[c.right];
    // Stale: one side changed since the candidate was queued.
    if (l.id != c.left_id || r.id != c.right_id || l.next != c.right) continue;
    l.id = find(c.left_id, c.right_id)->result;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    r.id = -1;
    push(l.prev, c.left);
    push(c.left, l.next);
  }
  for (int i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

}  // namespace fp
