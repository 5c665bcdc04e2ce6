// Presentation helpers (see plan_view.h).
#include "planner/plan_io/plan_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace fp {

int layer_of(std::string_view name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  int v = 0;
  size_t i = 4;
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) v = v * 10 + (name[i] - '0');
  return i < name.size() && name[i] == '.' ? v : -1;
}

std::string node_role(std::string_view name) {
  if (layer_of(name) < 0) return std::string(name);
  return std::string(name.substr(name.find('.', 4) + 1));
}

std::string weight_role(std::string_view name) {
  std::string r = node_role(name);
  for (std::string_view suffix : {".weight", ".bias"})
    if (r.size() > suffix.size() && r.compare(r.size() - suffix.size(), suffix.size(), suffix) == 0)
      r.resize(r.size() - suffix.size());
  return r;
}

std::string format_layers(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  if (v.empty()) return "-";
  if (v.size() >= 3) {
    const int step = v[1] - v[0];
    bool arith = step > 1;
    for (size_t i = 2; arith && i < v.size(); ++i) arith = v[i] - v[i - 1] == step;
    if (arith) return std::to_string(v.front()) + "-" + std::to_string(v.back()) + "/" + std::to_string(step);
  }
  std::string s;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    if (!s.empty()) s += ",";
    s += std::to_string(v[i]);
    if (j > i) s += "-" + std::to_string(v[j]);
    i = j + 1;
  }
  return s;
}

std::string format_gib(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return b;
}

std::string format_bytes(double bytes) {
  char b[32];
  const double a = std::abs(bytes);
  if (a == 0) return "0";
  if (a >= 1024.0 * 1024 * 1024 * 0.1) return format_gib(bytes);
  if (a >= 1024.0 * 1024 * 0.1) std::snprintf(b, sizeof b, "%.1f MiB", bytes / (1024.0 * 1024));
  else std::snprintf(b, sizeof b, "%.1f KiB", bytes / 1024.0);
  return b;
}

std::string format_us(double us) {
  char b[32];
  if (us >= 1000) std::snprintf(b, sizeof b, "%.2f ms", us / 1000);
  else if (us >= 100) std::snprintf(b, sizeof b, "%.0f us", us);
  else std::snprintf(b, sizeof b, "%.1f us", us);
  return b;
}

}  // namespace fp
