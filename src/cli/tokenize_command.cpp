// `mote tokenize`: what a job would feed the model, for checking a
// tokenizer against another implementation or a prompt file before a run.
#include <iostream>

#include <nlohmann/json.hpp>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/dist/mpi_session.h"
#include "mote/io/json_file.h"
#include "mote/tokenizer/chat_format.h"
#include "mote/tokenizer/tokenizer.h"
#include "mote/util/error.h"

namespace mote {

int run_tokenize(const std::vector<std::string>& args, const std::string&, MpiSession& mpi) {
  std::string dir = default_model_dir(), input;
  bool add_special = false;
  po::options_description options("Options");
  options.add_options()
      ("tokenizer", po::value(&dir)->default_value(default_model_dir()),
       "directory with tokenizer.json and tokenizer_config.json (a model directory will do)")
      ("input", po::value(&input)->required(), "JSONL file: {\"text\": ...} or {\"messages\": [...]} per line")
      ("add-special-tokens", po::bool_switch(&add_special), "encode text lines with the special tokens (BOS) a raw prompt gets");
  const ParsedOptions parsed = parse_options(args, options);
  if (parsed.help) {
    if (mpi.rank() == 0) {
      std::cout << "Usage: mote tokenize --tokenizer DIR --input FILE.jsonl [--add-special-tokens]\n\n"
                   "Prints one JSON object per input line, in order: {\"ids\": [...]} for {\"text\": ...} lines (encoded\n"
                   "as the Hugging Face library does with add_special_tokens=False unless the flag is given), and\n"
                   "{\"ids\": [...], \"text\": RENDERED} for {\"messages\": [...]} lines, rendered in the chat format and\n"
                   "encoded without added special tokens; {\"error\": ...} for a line that cannot be encoded.\n"
                   "Chat rendering follows the DeepSeek-V3 format; other models' templates are not rendered yet.\n\n"
                << options;
    }
    return 0;
  }
  if (mpi.rank() != 0) return 0;
  const Tokenizer tokenizer = Tokenizer::load(dir);
  const std::string text = read_input_file(input, "input file", 4ull << 30);
  size_t begin = 0;
  for (int line_no = 1; begin < text.size(); ++line_no) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + begin, end - begin);
    begin = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = fmt::format("{}:{}", input, line_no);
    const nlohmann::json j = parse_json(line, where);
    nlohmann::json out;
    try {
      if (j.contains("text") && j["text"].is_string()) {
        out["ids"] = tokenizer.encode(j["text"].get<std::string>(), add_special);
      } else if (j.contains("messages") && j["messages"].is_array()) {
        std::vector<ChatMessage> messages;
        for (const auto& m : j["messages"]) {
          if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") || !m["content"].is_string()) {
            fail("{}: each message needs string 'role' and 'content'", where);
          }
          messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
        }
        const std::string rendered = render_deepseek_chat(tokenizer, messages);
        out["ids"] = tokenizer.encode(rendered, false);
        out["text"] = rendered;
      } else {
        fail("{}: expected {{\"text\": ...}} or {{\"messages\": [...]}}", where);
      }
    } catch (const Error& e) {
      out = {{"error", e.what()}};
    }
    std::cout << out.dump() << "\n";
  }
  return 0;
}

}  // namespace mote
