// UTF-8 hold-back and stop strings for streamed text (see text_stream.h).
#include "tools/serve/text_stream.h"

#include <algorithm>

namespace fp::serve {

namespace {

// One step of UTF-8 decoding at s[i] (Unicode Table 3-7). `length` bytes form either a
// well-formed character (`valid`) or a maximal ill-formed subpart -- the longest run
// that starts like a character -- which becomes one U+FFFD (Unicode's recommended
// practice, which Python's and browsers' decoders follow). `incomplete`: the subpart
// was cut off by the end of the input and might still complete.
struct Step {
  size_t length;
  bool valid, incomplete;
};

Step decode_step(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {1, true, false};
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {1, false, false};
  }
  for (size_t k = 1; k < n; ++k) {
    if (i + k >= s.size()) return {k, false, true};
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return {k, false, false};
  }
  return {n, true, false};
}

}  // namespace

std::string sanitize_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const Step st = decode_step(bytes, i);
    if (st.valid) out.append(bytes.substr(i, st.length));
    else out += "\xEF\xBF\xBD";
    i += st.length;
  }
  return out;
}

size_t utf8_stable_prefix(std::string_view bytes) {
  // Only the last three bytes can start a sequence that is still incomplete.
  const size_t from = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t i = from; i < bytes.size(); ++i)
    if (decode_step(bytes, i).incomplete) return i;
  return bytes.size();
}

TextStream::TextStream(std::vector<std::string> stop_strings) : stops_(std::move(stop_strings)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
  for (const auto& s : stops_) longest_stop_ = std::max(longest_stop_, s.size());
}

// Cuts clean_ at the first stop string that ends at or after `from` + its length.
bool TextStream::find_stop(size_t from) {
  size_t cut = std::string::npos;
  for (const auto& stop : stops_) {
    const size_t start = from >= stop.size() - 1 ? from - (stop.size() - 1) : 0;
    const size_t at = clean_.find(stop, start);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut == std::string::npos) return false;
  clean_.resize(std::max(cut, taken_));  // taken_ never passes a possible stop start
  raw_.clear();
  stopped_ = true;
  return true;
}

bool TextStream::push(std::string_view bytes) {
  if (stopped_) return true;
  raw_.append(bytes);
  // Everything but an incomplete trailing character is final: sanitise and move it.
  const size_t final_bytes = utf8_stable_prefix(raw_);
  if (final_bytes == 0) return false;
  const size_t old = clean_.size();
  clean_ += sanitize_utf8(std::string_view(raw_).substr(0, final_bytes));
  raw_.erase(0, final_bytes);
  return find_stop(old);
}

std::string TextStream::take_ready() {
  size_t end = clean_.size();
  if (!stopped_) {
    // Hold back the longest tail that is a proper prefix of some stop string.
    for (const auto& stop : stops_) {
      for (size_t k = std::min(stop.size() - 1, clean_.size() - taken_); k > 0; --k) {
        if (clean_.compare(clean_.size() - k, k, stop, 0, k) == 0) {
          end = std::min(end, clean_.size() - k);
          break;
        }
      }
    }
  }
  std::string out = clean_.substr(taken_, end - taken_);
  taken_ = end;
  return out;
}

std::string TextStream::take_rest() {
  if (!stopped_ && !raw_.empty()) {
    const size_t old = clean_.size();
    clean_ += sanitize_utf8(raw_);
    raw_.clear();
    find_stop(old);
  }
  std::string out = clean_.substr(taken_);
  taken_ = clean_.size();
  return out;
}

}  // namespace fp::serve
