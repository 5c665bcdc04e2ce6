// Helpers for presenting plans to people (`inspect`, `diff`): node roles without the
// layer prefix, compact layer lists, byte and time formatting.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fp {

// "blk.7.attn_q_b" -> "attn_q_b"; "mtp.attn_q_b" -> "mtp.attn_q_b"; "output" -> "output".
std::string node_role(std::string_view name);
// Weight names the same way, without ".weight"/".bias": "blk.7.ffn_up_exps.weight" -> "ffn_up_exps".
std::string weight_role(std::string_view name);
// Layer index of a "blk.N.*" name, -1 otherwise.
int layer_of(std::string_view name);

// Sorted unique layers as text: "3", "0-42", "2-42/2" (every 2nd), "0-1,3,38-42"; "-" if empty.
std::string format_layers(std::vector<int> layers);

std::string format_gib(double bytes);    // "80.76 GiB"
std::string format_bytes(double bytes);  // GiB, MiB or KiB, whichever reads best: "80.76 GiB", "12.3 MiB"
std::string format_us(double us);      // "812 us", "13.76 ms"

}  // namespace fp
