// CSV, JSON and SVG output of `flashplan bench` (see bench_report.h).
#include "tools/bench_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace fp::bench {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    if (!v.empty()) return v;
  }
  return "unknown CPU";
}

// =============================================================================
// CSV and JSON
// =============================================================================

void write_csv_head(std::ostream& out, const Meta& meta) {
  for (const auto& [k, v] : meta) {
    std::string one_line = v;
    std::replace(one_line.begin(), one_line.end(), '\n', ' ');
    out << "# " << k << ": " << one_line << "\n";
  }
  out << kCsvHeader << "\n";
  out.flush();
}

void write_csv_row(std::ostream& out, const Row& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%lld,%lld,%.2f,%lld,%.2f,%.2f,%.6f,%llu\n", (long long)r.ctx_tokens,
                (long long)r.prefill_tokens, r.prefill_tps, (long long)r.gen_tokens, r.gen_tps, r.gen_tps_ss,
                r.first_token_sec, (unsigned long long)r.kvcache_bytes);
  out << buf;
  out.flush();
}

std::string to_json(const Meta& meta, const std::vector<Row>& rows) {
  nlohmann::ordered_json j;
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  for (const auto& [k, v] : meta) m[k] = v;
  j["meta"] = m;
  j["rows"] = nlohmann::ordered_json::array();
  for (const Row& r : rows) {
    nlohmann::ordered_json o;
    o["ctx_tokens"] = r.ctx_tokens;
    o["prefill_tokens"] = r.prefill_tokens;
    o["prefill_tps"] = r.prefill_tps;
    o["gen_tokens"] = r.gen_tokens;
    o["gen_tps"] = r.gen_tps;
    o["gen_tps_ss"] = r.gen_tps_ss;
    o["first_token_sec"] = r.first_token_sec;
    o["kvcache_bytes"] = r.kvcache_bytes;
    o["prefill_s"] = r.prefill_s;
    o["gen_s"] = r.gen_s;
    o["drafted"] = r.drafted;
    o["accepted"] = r.accepted;
    o["restored"] = r.restored;
    o["generated"] = r.generated;
    j["rows"].push_back(std::move(o));
  }
  return j.dump(1);
}

// =============================================================================
// SVG
// =============================================================================

namespace {

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
    }
  }
  return o;
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

// A round axis step near max/5: 1, 2, 2.5 or 5 times a power of ten.
double nice_step(double max) {
  if (!(max > 0)) return 1;
  const double raw = max / 5;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (raw <= m * p) return m * p;
  return 10 * p;
}

std::string tick_label(double v, double step) {
  char b[32];
  if (step >= 1) std::snprintf(b, sizeof b, "%.0f", v);
  else std::snprintf(b, sizeof b, "%.*f", int(std::ceil(-std::log10(step))) + 1, v);
  return b;
}

std::string ctx_label(int64_t v) {
  if (v >= 1024 && v % 1024 == 0) return std::to_string(v / 1024) + "k";
  return std::to_string(v);
}

struct Series {
  std::string name, color, dash;
  std::vector<double> y;
};

constexpr double kW = 880, kLeft = 90, kRight = 30, kPlotW = kW - kLeft - kRight;

// One panel: axes, grid, ticks, the series, a legend. x is in context tokens.
void panel(std::ostringstream& o, double top, double h, const std::string& ylabel, const std::vector<int64_t>& xs,
           int64_t xmax, const std::vector<Series>& series) {
  double ymax = 0;
  for (const auto& s : series)
    for (double v : s.y)
      if (std::isfinite(v)) ymax = std::max(ymax, v);
  const double step = nice_step(ymax);
  const double ytop = std::max(step, std::ceil(ymax / step) * step);
  auto X = [&](double x) { return kLeft + kPlotW * x / double(xmax); };
  auto Y = [&](double y) { return top + h - h * std::clamp(y, 0.0, ytop) / ytop; };

  o << "<g class=\"panel\">\n";
  for (double v = 0; v <= ytop + step / 2; v += step) {
    o << "<line x1=\"" << num(kLeft) << "\" y1=\"" << num(Y(v)) << "\" x2=\"" << num(kLeft + kPlotW) << "\" y2=\""
      << num(Y(v)) << "\" stroke=\"#ddd\"/>\n";
    o << "<text x=\"" << num(kLeft - 6) << "\" y=\"" << num(Y(v) + 4) << "\" text-anchor=\"end\">"
      << tick_label(v, step) << "</text>\n";
  }
  const size_t every = (xs.size() + 11) / 12;  // at most 12 labels
  for (size_t i = 0; i < xs.size(); i += every) {
    o << "<line x1=\"" << num(X(double(xs[i]))) << "\" y1=\"" << num(top + h) << "\" x2=\"" << num(X(double(xs[i])))
      << "\" y2=\"" << num(top + h + 5) << "\" stroke=\"#333\"/>\n";
    o << "<text x=\"" << num(X(double(xs[i]))) << "\" y=\"" << num(top + h + 18) << "\" text-anchor=\"middle\">"
      << ctx_label(xs[i]) << "</text>\n";
  }
  o << "<line x1=\"" << num(kLeft) << "\" y1=\"" << num(top) << "\" x2=\"" << num(kLeft) << "\" y2=\"" << num(top + h)
    << "\" stroke=\"#333\"/>\n";
  o << "<line x1=\"" << num(kLeft) << "\" y1=\"" << num(top + h) << "\" x2=\"" << num(kLeft + kPlotW) << "\" y2=\""
    << num(top + h) << "\" stroke=\"#333\"/>\n";
  o << "<text transform=\"translate(" << num(kLeft - 62) << "," << num(top + h / 2)
    << ") rotate(-90)\" text-anchor=\"middle\">" << esc(ylabel) << "</text>\n";

  for (size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    o << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"2\"";
    if (!s.dash.empty()) o << " stroke-dasharray=\"" << s.dash << "\"";
    o << " points=\"";
    for (size_t i = 0; i < xs.size(); ++i) o << (i ? " " : "") << num(X(double(xs[i]))) << "," << num(Y(s.y[i]));
    o << "\"><title>" << esc(s.name) << "</title></polyline>\n";
    for (size_t i = 0; i < xs.size(); ++i)
      o << "<circle cx=\"" << num(X(double(xs[i]))) << "\" cy=\"" << num(Y(s.y[i])) << "\" r=\"2.5\" fill=\"" << s.color
        << "\"/>\n";
    const double ly = top + 14 + 16 * double(k);
    o << "<line x1=\"" << num(kLeft + kPlotW - 190) << "\" y1=\"" << num(ly - 4) << "\" x2=\""
      << num(kLeft + kPlotW - 165) << "\" y2=\"" << num(ly - 4) << "\" stroke=\"" << s.color
      << "\" stroke-width=\"2\"" << (s.dash.empty() ? "" : " stroke-dasharray=\"" + s.dash + "\"") << "/>\n";
    o << "<text x=\"" << num(kLeft + kPlotW - 160) << "\" y=\"" << num(ly) << "\">" << esc(s.name) << "</text>\n";
  }
  o << "</g>\n";
}

std::string meta_value(const Meta& meta, const std::string& key) {
  for (const auto& [k, v] : meta)
    if (k == key) return v;
  return "";
}

}  // namespace

std::string to_svg(const Meta& meta, const std::vector<Row>& rows) {
  constexpr double kH = 600, kTop = 70, kPanelH = 200, kGap = 70;
  std::vector<int64_t> xs;
  Series prefill{"prefill tok/s (newest interval)", "#1f77b4", "", {}};
  Series gen{"generation tok/s", "#d62728", "", {}};
  Series ss{"generation tok/s, steady state", "#ff7f0e", "6,4", {}};
  int64_t xmax = 1;
  for (const Row& r : rows) {
    xs.push_back(r.ctx_tokens);
    xmax = std::max(xmax, r.ctx_tokens);
    prefill.y.push_back(r.prefill_tps);
    gen.y.push_back(r.gen_tps);
    ss.y.push_back(r.gen_tps_ss);
  }
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\"" << kH << "\" viewBox=\"0 0 " << kW
    << " " << kH << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  const std::string title = "flashplan bench: " + meta_value(meta, "model") + " on " + meta_value(meta, "device") +
                            " (" + meta_value(meta, "backend") + ")";
  const std::string sub = "commit " + meta_value(meta, "commit") + ", " + meta_value(meta, "date") + ", " +
                          meta_value(meta, "gen_tokens") + " generated tokens per frontier";
  o << "<text x=\"" << num(kW / 2) << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">"
    << esc(title) << "</text>\n";
  o << "<text x=\"" << num(kW / 2) << "\" y=\"44\" text-anchor=\"middle\" fill=\"#555\">" << esc(sub) << "</text>\n";
  panel(o, kTop, kPanelH, "prefill tok/s", xs, xmax, {prefill});
  panel(o, kTop + kPanelH + kGap, kPanelH, "generation tok/s", xs, xmax, {gen, ss});
  o << "<text x=\"" << num(kLeft + kPlotW / 2) << "\" y=\"" << num(kH - 12)
    << "\" text-anchor=\"middle\">context (tokens)</text>\n";
  o << "</svg>\n";
  return o.str();
}

}  // namespace fp::bench
