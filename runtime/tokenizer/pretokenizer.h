// Pre-tokenizers: the regex splits that cut text into pieces before BPE, chosen by the
// GGUF key tokenizer.ggml.pre. Each named pre-tokenizer is a list of regexes applied
// in sequence, like a Hugging Face `Sequence` of `Split(behavior="isolated")`: every
// match and every gap between matches becomes a piece, and each later regex splits
// the pieces the earlier ones left, seeing one piece at a time (so `$` and lookahead
// stop at the piece's end).
//
// Regexes run in PCRE2 (UTF mode, JIT when available). The reference tokenizers use
// Oniguruma, whose Unicode `\s` is the White_Space property; PCRE2's `\s` also takes
// U+180E, so every `\s`/`\S` here is expanded to the explicit White_Space set.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fp {

class PreTokenizer {
 public:
  // Throws fp::Error for a name not in known_names().
  static PreTokenizer named(std::string_view name);
  static std::vector<std::string> known_names();

  // Appends the pieces of `text` (valid UTF-8, not checked here) as views into it.
  // Concatenated, the pieces give back `text`.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

  const std::string& name() const { return name_; }

  struct Regex;  // a compiled PCRE2 pattern

 private:
  std::string name_;
  std::vector<std::shared_ptr<const Regex>> regexes_;
};

}  // namespace fp
