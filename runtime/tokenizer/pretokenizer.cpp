// The named split-regex lists and the PCRE2 matching loop (see pretokenizer.h).
// The regex lists are those of the models' tokenizer.json files, as carried by
// llama.cpp's llama-vocab.cpp (llm_tokenizer_bpe); MODEL.md §9.1 for joyai-llm.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "runtime/tokenizer/pretokenizer.h"

#include <pcre2.h>

#include <utility>

#include "ops/core/error.h"

namespace fp {
namespace {

// Unicode White_Space (Oniguruma's `\s` for UTF-8 subjects), as PCRE2 class items.
constexpr const char* kWhiteSpace =
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

// Rewrites `\s` and `\S` into the explicit White_Space set, inside and outside
// character classes. (`\S` inside a class has no single-class form; no pattern here
// uses it.)
std::string expand_space_escapes(std::string_view pat) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pat.size(); ++i) {
    const char c = pat[i];
    if (c == '\\' && i + 1 < pat.size()) {
      const char e = pat[i + 1];
      if (e == 's') {
        out += in_class ? std::string(kWhiteSpace) : str("[", kWhiteSpace, "]");
      } else if (e == 'S') {
        if (in_class) fail("pre-tokenizer pattern: \\S inside a character class is not supported: ", pat);
        out += str("[^", kWhiteSpace, "]");
      } else {
        out += c;
        out += e;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      if (i + 1 < pat.size() && pat[i + 1] == '^') out += pat[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

// ---- The pattern lists -------------------------------------------------------

// DeepSeek-V3 split (llama.cpp DEEPSEEK3_LLM, also JOYAI_LLM): digits in runs of up
// to 3, then CJK ideographs U+4E00-U+9FA5 with hiragana and katakana, then the
// words/punctuation/whitespace split.
const std::vector<std::string> kDeepseekV3 = {
    R"(\p{N}{1,3})",
    R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)",
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+)"
    R"(|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)"
    R"(| ?[\p{P}\p{S}]+[\r\n]*)"
    R"(|\s*[\r\n]+)"
    R"(|\s+(?!\S))"
    R"(|\s+)",
};

// DeepSeek LLM (67B/7B): the letter class is the cased letters (Lu/Ll/Lt) of the
// listed scripts, spelled out as code point ranges exactly as in tokenizer.json.
const std::vector<std::string> kDeepseekLlm = {
    R"([\r\n])",
    R"(\s?[\x{41}-\x{5A}\x{61}-\x{7A}\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF})"
    R"(\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}-\x{377}\x{37B}-\x{37D}\x{37F}\x{386})"
    R"(\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F})"
    R"(\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA})"
    R"(\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15})"
    R"(\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B})"
    R"(\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4})"
    R"(\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4})"
    R"(\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124})"
    R"(\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F})"
    R"(\x{2145}-\x{2149}\x{214E}\x{2183}-\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4})"
    R"(\x{2CEB}-\x{2CEE}\x{2CF2}-\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F})"
    R"(\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17})"
    R"(\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3})"
    R"(\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF})"
    R"(\x{1E900}-\x{1E943}]+)",
    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)",
    R"(\s+$)",
    R"([\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+)",
    R"(\p{N}+)",
};

// DeepSeek Coder.
const std::vector<std::string> kDeepseekCoder = {
    R"([\r\n])",
    R"(\s?\p{L}+)",
    R"(\s?\p{P}+)",
    R"([\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+)",
    R"(\p{N})",
};

// GPT-2 (the Hugging Face ByteLevel pre-tokenizer's own regex).
const std::vector<std::string> kGpt2 = {
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)",
};

const std::vector<std::pair<std::string, const std::vector<std::string>*>>& table() {
  static const std::vector<std::pair<std::string, const std::vector<std::string>*>> t = {
      {"joyai-llm", &kDeepseekV3},
      {"deepseek-v3", &kDeepseekV3},
      {"deepseek-llm", &kDeepseekLlm},
      {"deepseek-coder", &kDeepseekCoder},
      {"gpt-2", &kGpt2},
  };
  return t;
}

}  // namespace

// ---- Compiled regex ----------------------------------------------------------

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  std::string pattern;

  explicit Regex(std::string pat) : pattern(std::move(pat)) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                         PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      fail("pre-tokenizer regex does not compile at offset ", off, ": ", reinterpret_cast<char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // failure is fine: the interpreter runs instead
  }
  ~Regex() { pcre2_code_free(code); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
};

PreTokenizer PreTokenizer::named(std::string_view name) {
  for (const auto& [n, patterns] : table()) {
    if (n != name) continue;
    PreTokenizer p;
    p.name_ = n;
    for (const auto& pat : *patterns) p.regexes_.push_back(std::make_shared<const Regex>(expand_space_escapes(pat)));
    return p;
  }
  std::string known;
  for (const auto& n : known_names()) known += (known.empty() ? "" : ", ") + n;
  fail("tokenizer.ggml.pre: unknown pre-tokenizer '", name, "', expected one of: ", known);
}

std::vector<std::string> PreTokenizer::known_names() {
  std::vector<std::string> names;
  for (const auto& entry : table()) names.push_back(entry.first);
  return names;
}

// ---- Splitting ---------------------------------------------------------------

namespace {

struct MatchData {
  pcre2_match_data* md;
  explicit MatchData(const pcre2_code* code) : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
    if (!md) throw std::bad_alloc();
  }
  ~MatchData() { pcre2_match_data_free(md); }
};

// One isolated split of `piece`: matches and the gaps between them, in order.
void split_isolated(const pcre2_code* code, pcre2_match_data* md, std::string_view piece,
                    std::vector<std::string_view>& out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
  size_t start = 0, emitted = 0;
  while (start < piece.size()) {
    const int rc = pcre2_match(code, subject, piece.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      fail("pre-tokenizer: regex match failed on a ", piece.size(), "-byte piece: ", reinterpret_cast<char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {  // empty match: no piece; step one character (none of our patterns do this)
      start = b + 1;
      while (start < piece.size() && (static_cast<uint8_t>(piece[start]) & 0xC0) == 0x80) ++start;
      continue;
    }
    if (b > emitted) out.push_back(piece.substr(emitted, b - emitted));
    out.push_back(piece.substr(b, e - b));
    emitted = start = e;
  }
  if (emitted < piece.size()) out.push_back(piece.substr(emitted));
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  if (text.empty()) return;
  std::vector<std::string_view> cur{text}, next;
  for (const auto& re : regexes_) {
    MatchData md(re->code);
    next.clear();
    for (std::string_view p : cur) split_isolated(re->code, md.md, p, next);
    std::swap(cur, next);
  }
  pieces.insert(pieces.end(), cur.begin(), cur.end());
}

}  // namespace fp
