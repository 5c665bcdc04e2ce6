// synth_vocab: the byte-level BPE vocabulary of synth models.
//
// 256 GPT-2 byte symbols make every string encodable; merges learned from a small
// built-in text make ordinary English and code encode in fewer tokens, as a real
// vocabulary would; the DS4 special strings are CONTROL tokens so that the chat
// template's markers tokenize as single ids. The learning pass splits words with a
// plain ASCII rule (not the joyai-llm regex): merges only set ranks, so any split
// gives a valid vocabulary, just a less tuned one.
#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "ops/core/error.h"
#include "planner/model/synth.h"

namespace fp {
namespace {

// Written for this project: a little prose, dialogue, code and numbers, so merges
// cover common English, chat phrasing, identifiers and digits.
constexpr std::string_view kText = R"TEXT(
The quick brown fox jumps over the lazy dog. A plan is a flat description of the work: which
kernel runs, where each weight lives, and how much memory every phase needs. The planner reads
the model header and the device profile, and it writes the plan before the first token is seen.
The runtime then loads the plan, maps the weights, and runs the same graph for every step.

Hello! How can I help you today? I would like to know how the model works. Sure, here is a short
answer. The model reads one token at a time, looks at the tokens that came before it, and writes
the next one. It keeps a small window of recent keys and values, and it also keeps compressed
rows that summarise the older part of the context. Thank you, that is very helpful. You are
welcome. Is there anything else you want to know about the model, the planner, or the runtime?

When the context grows, the compressed rows grow too, but only one row for every four tokens in
the sparse layers and one row for every long window in the heavy layers. The indexer chooses which
of the sparse rows each query should see. The experts are small feed forward networks; the router
picks a few of them for every token, and the shared expert always runs. Hyper connections keep
four residual streams and mix them after every attention and every feed forward block.

def main(argv):
    config = read_config(argv[1])
    for layer in range(config.n_layer):
        print("layer", layer, "ratio", config.compress_ratios[layer])
    return 0

int main(int argc, char** argv) {
  const int n = argc > 1 ? atoi(argv[1]) : 16;
  for (int i = 0; i < n; ++i) printf("%d %d\n", i, i * i);
  return 0;
}

Numbers and dates: 0 1 2 3 4 5 6 7 8 9 10 16 32 64 128 256 512 1024 2048 4096 65536, the year
2026, version 1.0.3, 3.14159, 42%, $19.99, 12:30, 100 tokens per second, 80 GB of weights.

The weather was warm and the sky was clear, so they walked along the river until the evening.
She asked what time it was, and he said that it was almost seven. They talked about books, about
music, about the places they had seen, and about the things they wanted to learn next year.
Every question has an answer, but not every answer is simple. Think first, then write.
)TEXT";

// GPT-2's byte -> printable code point map: printable Latin-1 bytes map to themselves,
// the rest to 256, 257, ... in byte order.
std::vector<std::string> byte_symbols() {
  auto utf8 = [](uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += char(cp);
    } else {
      s += char(0xC0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3F));
    }
    return s;
  };
  std::vector<std::string> out(256);
  uint32_t extra = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    out[b] = utf8(printable ? b : 256 + extra++);
  }
  return out;
}

// Words for merge learning: an optional space then a letter run, a run of up to 3
// digits, an optional space then a punctuation run, or a whitespace run.
std::vector<std::string> split_words(std::string_view text) {
  auto letter = [](unsigned char c) { return std::isalpha(c) || c >= 0x80; };
  auto space = [](unsigned char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  std::vector<std::string> words;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    const bool lead = text[j] == ' ' && j + 1 < text.size() && !space(text[j + 1]);
    if (lead) ++j;
    const unsigned char c = text[j];
    if (letter(c)) {
      while (j < text.size() && letter(text[j])) ++j;
    } else if (std::isdigit(c)) {
      const size_t start = j;
      while (j < text.size() && std::isdigit((unsigned char)text[j]) && j - start < 3) ++j;
    } else if (!space(c)) {
      while (j < text.size() && !space(text[j]) && !letter(text[j]) && !std::isdigit((unsigned char)text[j])) ++j;
    } else {
      while (j < text.size() && space(text[j])) ++j;
    }
    words.emplace_back(text.substr(i, j - i));
    i = j;
  }
  return words;
}

// Classic BPE training: repeatedly merge the most frequent adjacent pair (ties by the
// smaller pair, so the result is deterministic) until max_merges or no pair occurs twice.
std::vector<std::pair<std::string, std::string>> learn_merges(size_t max_merges) {
  const auto sym = byte_symbols();
  std::map<std::vector<std::string>, int64_t> words;
  for (const auto& w : split_words(kText)) {
    std::vector<std::string> s;
    for (unsigned char c : w) s.push_back(sym[c]);
    ++words[s];
  }
  std::vector<std::pair<std::string, std::string>> merges;
  while (merges.size() < max_merges) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [w, n] : words)
      for (size_t i = 0; i + 1 < w.size(); ++i) pairs[{w[i], w[i + 1]}] += n;
    auto best = pairs.end();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (best == pairs.end() || it->second > best->second) best = it;
    if (best == pairs.end() || best->second < 2) break;
    const auto [a, b] = best->first;
    merges.emplace_back(a, b);
    std::map<std::vector<std::string>, int64_t> next;
    for (const auto& [w, n] : words) {
      std::vector<std::string> m;
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == a && w[i + 1] == b) {
          m.push_back(a + b);
          ++i;
        } else {
          m.push_back(w[i]);
        }
      }
      next[m] += n;
    }
    words = std::move(next);
  }
  return merges;
}

constexpr int32_t kNormal = 1, kControl = 3, kUnused = 5;

// Flash's vocabulary size and where its special tokens sit (MODEL.md §9.1).
constexpr uint32_t kFlashVocab = 129280;
struct FixedId { const char* token; uint32_t id; };
constexpr FixedId kFlashSpecialIds[] = {
    {"<｜begin▁of▁sentence｜>", 0}, {"<｜end▁of▁sentence｜>", 1}, {"<｜fim▁end｜>", 128802},
    {"<｜User｜>", 128803},          {"<｜Assistant｜>", 128804},    {"<think>", 128821},
    {"</think>", 128822},            {"｜DSML｜", 128825},          {"<｜latest_reminder｜>", 128828},
};

}  // namespace

const std::vector<std::string>& ds4_special_tokens() {
  static const std::vector<std::string> s = [] {
    std::vector<std::string> v;
    for (const auto& f : kFlashSpecialIds) v.emplace_back(f.token);
    return v;
  }();
  return s;
}

SynthVocab synth_vocab(uint32_t n_vocab) {
  const auto& specials = ds4_special_tokens();
  const uint32_t fixed = uint32_t(specials.size()) + 256;
  if (n_vocab < fixed)
    fail("synth vocabulary: vocab_size ", n_vocab, ", expected at least ", fixed,
         " (256 byte tokens and ", specials.size(), " special tokens)");

  SynthVocab v;
  v.tokens.assign(n_vocab, "");
  v.types.assign(n_vocab, kUnused);
  std::vector<bool> used(n_vocab, false);
  auto put = [&](uint32_t id, std::string tok, int32_t type) {
    v.tokens[id] = std::move(tok);
    v.types[id] = type;
    used[id] = true;
  };
  if (n_vocab >= kFlashVocab) {
    for (const auto& f : kFlashSpecialIds) put(f.id, f.token, kControl);
  } else {
    put(0, specials[0], kControl);
    put(1, specials[1], kControl);
    for (size_t i = 2; i < specials.size(); ++i) put(n_vocab - uint32_t(specials.size()) + uint32_t(i), specials[i], kControl);
  }
  // Free ids in order: byte symbols first, then merges, then placeholders.
  uint32_t next = 0;
  auto next_free = [&]() -> int64_t {
    while (next < n_vocab && used[next]) ++next;
    return next < n_vocab ? int64_t(next) : -1;
  };
  for (const auto& s : byte_symbols()) put(uint32_t(next_free()), s, kNormal);
  std::set<std::string> have(v.tokens.begin(), v.tokens.end());
  const uint32_t room = n_vocab - fixed;
  for (const auto& [a, b] : learn_merges(room)) {
    // A merge may rebuild a string an earlier merge already made: the rule is still
    // needed, the token exists once.
    if (!have.count(a + b)) {
      const int64_t id = next_free();
      if (id < 0) break;
      have.insert(a + b);
      put(uint32_t(id), a + b, kNormal);
    }
    v.merges.push_back(a + " " + b);
  }
  for (uint32_t n = 0; next_free() >= 0; ++n) put(next, str("<｜place▁holder▁no▁", n, "｜>"), kUnused);
  v.bos = 0;
  v.eos = 1;
  return v;
}

}  // namespace fp
