// `mote tokenize`: what a job would feed the model, for checking a
// tokenizer against another implementation or a prompt file before a run.
#include <iostream>

#include <nlohmann/json.hpp>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/json_file.h"
#include "mote/tokenizer/chat_template.h"
#include "mote/tokenizer/pretokenizer.h"
#include "mote/tokenizer/tokenizer.h"
#include "mote/util/error.h"
#include "mote/util/stop_signal.h"
#include "mote/util/utf8.h"

namespace mote {

int run_tokenize(const std::vector<std::string>& args, const std::string&, MpiSession& mpi) {
  std::string dir = default_model_dir(), input, template_file;
  bool add_special = false;
  po::options_description options("Options");
  // clang-format off
  options.add_options()
      ("tokenizer", input_file(&dir, "DIR")->default_value(default_model_dir()),
       "directory with tokenizer.json and tokenizer_config.json (a model directory will do)")
      ("input", input_file(&input)->required(), "JSONL file: {\"text\": ...} or {\"messages\": [...]} per line")
      ("chat-template", input_file(&template_file),
       "Jinja chat template to render messages with (default: the directory's chat_template.jinja, else "
       "tokenizer_config.json's chat_template)")
      ("add-special-tokens", po::bool_switch(&add_special), "encode text lines with the special tokens (BOS) a raw prompt gets");
  // clang-format on
  const auto parsed = parse_command(
      args, options, mpi,
      "Usage: mote tokenize --tokenizer DIR --input FILE.jsonl [--chat-template FILE] [--add-special-tokens]\n\n"
      "Prints one JSON object per input line, in order: {\"ids\": [...]} for {\"text\": ...} lines (encoded\n"
      "as the Hugging Face library does with add_special_tokens=False unless the flag is given), and\n"
      "{\"ids\": [...], \"text\": RENDERED} for {\"messages\": [...]} lines, rendered with the chat template\n"
      "and encoded without added special tokens. A messages line may carry \"add_generation_prompt\"\n"
      "(default true) and any variable the template reads (\"enable_thinking\", \"reasoning_effort\", ...);\n"
      "\"current_date\": \"YYYY-MM-DD\" also fixes the date strftime_now() gives. A line the template\n"
      "refuses (raise_exception) or that cannot be encoded prints {\"error\": MESSAGE}.\n"
      "DIR may hold only tokenizer.json and tokenizer_config.json (and chat_template.jinja), or be a\n"
      "whole model directory; no weights are read.\n\n");
  if (!parsed) return 0;
  const Tokenizer tokenizer = Tokenizer::load(dir);
  std::optional<std::filesystem::path> template_path;
  if (!template_file.empty()) template_path = template_file;
  const std::optional<ChatTemplate> chat = ChatTemplate::load(dir, template_path);
  const std::string text = read_input_file(input, "input file", 4ull << 30);
  check_line_endings(text, input, "input file");
  size_t begin = 0;
  for (int line_no = 1; begin < text.size(); ++line_no) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + begin, end - begin);
    begin = end + 1;
    stop_point("tokenizing prompts");
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = fmt::format("{}:{}", input, line_no);
    const nlohmann::ordered_json j = parse_ordered_json(line, where);
    nlohmann::ordered_json out;
    try {
      if (!j.is_object()) fail("{}: expected a JSON object", where);
      if (j.contains("messages")) {
        if (!chat)
          fail(
              "{}: no chat template: {} has neither chat_template.jinja nor a chat_template in tokenizer_config.json "
              "(give --chat-template FILE)",
              where, dir);
        const std::string rendered = chat->render(j);
        out["ids"] = tokenizer.encode(rendered, false);
        out["text"] = rendered;
      } else if (j.contains("text") && j["text"].is_string()) {
        out["ids"] = tokenizer.encode(j["text"].get<std::string>(), add_special);
      } else {
        fail("{}: expected {{\"text\": ...}} or {{\"messages\": [...]}}", where);
      }
    } catch (const jinja::RaisedError& e) {
      out = {{"error", cut_utf8(e.message(), 1000)}};
    } catch (const TokenizerBroken&) {
      throw;
    } catch (const Error& e) {
      out = {{"error", e.what()}};
    }
    std::cout << out.dump() << "\n";
  }
  return 0;
}

}  // namespace mote
