// What `flashplan bench` writes: the CSV (ds4-bench's columns, with the run's
// provenance as leading `#` comment lines), a JSON object, and an SVG plot drawn by
// hand (prefill and generation tok/s against context; no plotting dependency).
#pragma once
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "tools/bench_sweep.h"

namespace fp::bench {

inline constexpr const char* kCsvHeader =
    "ctx_tokens,prefill_tokens,prefill_tps,gen_tokens,gen_tps,gen_tps_ss,first_token_sec,kvcache_bytes";

// Ordered key/value provenance: model, backend, device, date, commit, options.
using Meta = std::vector<std::pair<std::string, std::string>>;

// `# key: value` lines, then the header; rows follow with write_csv_row.
void write_csv_head(std::ostream& out, const Meta& meta);
void write_csv_row(std::ostream& out, const Row& r);

// {"meta": {...}, "rows": [{the CSV columns, prefill_s, gen_s, drafted, accepted,
// restored, generated}]}
std::string to_json(const Meta& meta, const std::vector<Row>& rows);

// A self-contained SVG: two panels sharing the context axis, prefill tok/s above,
// generation tok/s (all and steady state) below, titled from the meta.
std::string to_svg(const Meta& meta, const std::vector<Row>& rows);

// Current UTC time as 2026-01-31T12:00:00Z.
std::string utc_now();

// This host's CPU model name (from /proc/cpuinfo), or "unknown CPU".
std::string cpu_model_name();

}  // namespace fp::bench
