// `flashplan tokenize`: the model's tokenizer from the command line.
//   flashplan tokenize MODEL.gguf "text"        ids, space-separated, one line
//   flashplan tokenize MODEL.gguf --decode 1,2,3 the text those ids stand for
//   flashplan tokenize MODEL.gguf --file F       batch: F holds one JSON string per line
//                                                (F = "-": stdin); one line of ids each
// Special-token text (e.g. "<｜User｜>") is matched as one id unless --no-special.
// MODEL may be left out (or given as -m): the built-in tiny model is used then. With a
// single positional argument, it is the model when --decode/--file is given or when it
// names an existing .gguf file, and the text otherwise.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ops/core/error.h"
#include "planner/gguf/gguf.h"
#include "planner/model/builtin.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tools/command.h"

namespace {

void print_ids(const std::vector<int32_t>& ids) {
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[i]);
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
}

std::vector<int32_t> parse_id_list(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find_first_of(", ", i);
    if (j == std::string::npos) j = s.size();
    const std::string item = s.substr(i, j - i);
    if (!item.empty()) {
      size_t used = 0;
      long long v = 0;
      try {
        v = std::stoll(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != item.size() || v < INT32_MIN || v > INT32_MAX) {
        fp::fail("--decode: '", item, "' is not a token id, expected comma-separated integers like 1,2,3");
      }
      ids.push_back(static_cast<int32_t>(v));
    }
    i = j + 1;
  }
  return ids;
}

int run_file(const fp::Tokenizer& tok, const std::string& path, bool special) {
  std::ifstream file;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) fp::fail(path, ": cannot open");
  }
  std::istream& in = path == "-" ? std::cin : file;
  size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty() || line == "\r") continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fp::fail(path, ":", line_no, ": not JSON (", e.what(), "), expected one JSON string per line");
    }
    if (!j.is_string()) fp::fail(path, ":", line_no, ": a JSON ", j.type_name(), ", expected a JSON string");
    print_ids(tok.encode(j.get_ref<const std::string&>(), special));
  }
  return 0;
}

}  // namespace

FP_COMMAND("tokenize", "Tokenize text (or --decode ids) with a model's tokenizer", [](CLI::App& app) {
  struct Opts {
    std::vector<std::string> args;
    std::string model, text, decode, file;
    bool no_special = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("args", o->args, "[MODEL.gguf] TEXT (no MODEL: the built-in tiny model)")->expected(0, 2);
  app.add_option("-m,--model", o->model, "GGUF file whose tokenizer to use");
  app.add_option("--decode", o->decode, "comma-separated token ids to turn back into text");
  app.add_option("--file", o->file, "batch mode: file with one JSON string per line ('-': stdin)");
  app.add_flag("--no-special", o->no_special, "do not match control-token text (e.g. <｜User｜>) as special ids");
  return [o]() {
    const bool other_mode = !o->decode.empty() || !o->file.empty();
    bool have_text = false;
    auto& a = o->args;
    if (a.size() == 2) {
      if (!o->model.empty()) fp::fail("model given twice: '", o->model, "' (-m) and '", a[0], "'");
      o->model = a[0], o->text = a[1], have_text = true;
    } else if (a.size() == 1) {
      const bool is_model = o->model.empty() && (other_mode || (a[0].ends_with(".gguf") && std::filesystem::exists(a[0])));
      if (is_model) o->model = a[0];
      else o->text = a[0], have_text = true;
    }
    const int modes = have_text + !o->decode.empty() + !o->file.empty();
    if (modes != 1) fp::fail("give exactly one of: TEXT, --decode IDS, --file F");
    if (o->model.empty()) o->model = fp::builtin_model_path();
    const auto file = fp::gguf::File::open(o->model, {.allow_header_only = false});
    const auto tok = fp::Tokenizer::from_gguf(file);
    if (!o->file.empty()) return run_file(tok, o->file, !o->no_special);
    if (!o->decode.empty()) {
      const std::string text = tok.decode(parse_id_list(o->decode));
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fputc('\n', stdout);
      return 0;
    }
    print_ids(tok.encode(o->text, !o->no_special));
    return 0;
  };
});
