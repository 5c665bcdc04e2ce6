// The byte-level BPE tokenizer of a GGUF vocabulary (tokenizer.ggml.model = "gpt2"):
// tokens, ranked merges, token types, BOS/EOS, and the pre-tokenizer named by
// tokenizer.ggml.pre (pretokenizer.h). encode() never adds BOS/EOS: the chat renderer
// writes them as text and they are matched as special tokens.
//
// Special tokens are matched by their text before any splitting and are never BPE'd.
// Following llama.cpp (and Hugging Face, whose "added tokens" these are):
// USER_DEFINED tokens are always matched; CONTROL tokens only with parse_special.
// Matching is leftmost, longest first. A GGUF without tokenizer.ggml.token_type gets
// one derived from the merges: a token that no merge produces and that is not one of
// the 256 byte symbols (e.g. "<｜User｜>", "<think>") counts as CONTROL.
//
// Invalid UTF-8 input never fails: each byte that does not start a valid sequence
// becomes the token of that byte, and the valid runs around it are tokenized as
// separate texts. So decode(encode(s)) == s holds for any byte string s, with or
// without parse_special -- except for a byte whose one-character token is not a
// NORMAL token: DeepSeek vocabularies hold the never-valid bytes C0, C1, F5..FF only
// as USER_DEFINED tokens that decode to the character itself ("ù", not 0xF9), so
// such a byte is replaced by U+FFFD instead.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/tokenizer/bpe.h"
#include "runtime/tokenizer/pretokenizer.h"

namespace fp {
namespace gguf {
class File;
}

// llama.cpp's token types as stored in tokenizer.ggml.token_type.
enum class TokenType : int32_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

// Everything the tokenizer is built from, as plain data (a GGUF's tokenizer keys, or a
// vocabulary made in memory by tests and `flashplan synth`).
struct Vocab {
  std::vector<std::string> tokens;
  std::vector<std::string> merges;       // "left right", rank = index
  std::vector<int32_t> token_types;      // empty: derive (see above)
  std::string pre = "joyai-llm";         // tokenizer.ggml.pre
  int32_t bos = -1, eos = -1;            // -1: none
  std::string source = "vocab";          // for error messages (the GGUF path)
};

class Tokenizer {
 public:
  static Tokenizer from_gguf(const gguf::File& f);
  static Tokenizer from_vocab(const Vocab& v);

  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;
  std::string decode(std::span<const int32_t> ids) const;
  // The bytes token `id` stands for (special tokens: their text). Throws for a bad id.
  std::string piece(int32_t id) const;

  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  size_t size() const { return pieces_.size(); }
  // Id of a special (CONTROL or USER_DEFINED) token with exactly this text.
  std::optional<int32_t> special(std::string_view text) const;
  TokenType type(int32_t id) const;
  const std::string& pre_name() const { return pre_.name(); }

 private:
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;
  void encode_valid(std::string_view text, std::vector<int32_t>& out) const;
  void check_id(int32_t id) const;

  std::string source_;
  std::vector<std::string> pieces_;  // decoded bytes (special tokens: their text)
  std::vector<TokenType> types_;
  std::vector<int32_t> byte_token_;  // token id of each byte's one-character token
  std::vector<int32_t> invalid_byte_;  // [256] an invalid input byte's token, or -1: use fffd_
  std::vector<int32_t> fffd_;          // the tokens of U+FFFD
  BpeMerges merges_;
  PreTokenizer pre_;
  int32_t bos_ = -1, eos_ = -1;

  // Special-token matching: text -> id, plus per first byte the distinct lengths
  // (longest first) of the specials starting with that byte.
  struct Special {
    int32_t id;
    bool always;  // USER_DEFINED: matched even without parse_special
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Special, Hash, std::equal_to<>> specials_;
  std::vector<std::vector<uint32_t>> special_lengths_;  // [256]
};

}  // namespace fp
