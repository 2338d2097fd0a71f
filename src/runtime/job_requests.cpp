// A job's requests on rank 0 (job_steps.h): read and checked once at the
// start, then kept as a few bytes each and prepared again when they run.
#include <spdlog/spdlog.h>

#include <chrono>

#include "job_steps.h"
#include "mote/jinja/template.h"
#include "mote/tokenizer/pretokenizer.h"
#include "mote/util/error.h"
#include "mote/util/hash.h"
#include "mote/util/stop_signal.h"
#include "mote/util/utf8.h"

namespace mote {

namespace {

uint64_t prompt_hash(const PromptSpec& spec, const EncodedPrompt& encoded) {
  return fnv1a(fnv1a(fnv1a(fnv1a(kFnv1aBasis, spec.id), "\x1f"), encoded.text), spec.cls);
}

}  // namespace

JobRequests::JobRequests(JobOptions& options, JobModel& model, const MaskSets& masks)
    : options_(&options), model_(&model), content_hash_(kFnv1aBasis) {
  if (options.built_requests) {
    built_ = std::move(*options.built_requests);
    options.built_requests.reset();
    for (size_t i = 0; i < built_.size(); ++i) add(PromptSpec(built_[i]), PromptPlace{}, 0, masks);
  } else {
    const auto read = [&](const std::string& file, const std::string& cls) {
      files_.push_back({file, cls});
      const auto index = static_cast<uint32_t>(files_.size() - 1);
      for_each_prompt(file, [&](PromptSpec&& spec, const PromptPlace& place) {
        if (!cls.empty()) {
          if (!spec.prompt) fail("{}:{}: --class-prompts files hold plain-text prompts, one per line", file, spec.line);
          spec.cls = cls;
          spec.id = cls + ":" + spec.id;
        }
        add(std::move(spec), place, index, masks);
      });
    };
    if (!options.prompts.empty()) read(options.prompts, "");
    for (const std::string& cp : options.class_prompts) {
      const auto eq = cp.find('=');
      if (eq == std::string::npos || eq == 0) fail("--class-prompts {}: expected CLASS=FILE", cp);
      read(cp.substr(eq + 1), cp.substr(0, eq));
    }
  }
  std::unordered_map<uint64_t, size_t>().swap(id_hashes_);  // only needed while reading
  stop_point("tokenizing prompts");  // a stop now saves nothing: no checkpoint to speak of
  spdlog::info("{} requests in {} classes", size(), classes_.size());
}

void JobRequests::add(PromptSpec&& spec, const PromptPlace& place, uint32_t file, const MaskSets& masks) {
  stop_point("tokenizing prompts");
  const size_t i = entries_.size();
  // Hundreds of thousands of prompts take seconds: say how far it got.
  const auto now = std::chrono::steady_clock::now();
  if (i == 0) last_report_ = now;
  if (now - last_report_ > std::chrono::seconds(2)) {
    last_report_ = now;
    spdlog::info("tokenizing: {} prompts so far", i);
  }
  const std::string where = fmt::format("{}:{} (id '{}')", spec.file, spec.line, spec.id);
  // Ids are unique across the job's files (each file checks its own lines).
  const auto [seen, inserted] = id_hashes_.emplace(fnv1a(kFnv1aBasis, spec.id), i);
  if (!inserted) {
    const PromptSpec other = this->spec(seen->second);
    if (other.id == spec.id) fail("{}:{}: duplicate id '{}' (also {}:{})", spec.file, spec.line, spec.id, other.file, other.line);
  }
  Entry e;
  e.place = place;
  e.file = file;
  e.mask = masks.default_mask;
  if (!spec.mask.empty()) {
    const auto it =
        std::find_if(masks.sets.begin(), masks.sets.end(), [&](const ExpertMask& m) { return m.name == spec.mask; });
    if (it == masks.sets.end()) fail("{}: names mask set '{}', which no --mask NAME=FILE defines", where, spec.mask);
    e.mask = it->id == 0 ? nullptr : &*it;
  }
  auto [cls, new_class] = class_index_.emplace(spec.cls, static_cast<int16_t>(classes_.size()));
  if (new_class) {
    if (classes_.size() >= 32767) fail("{}: more than 32767 classes", where);
    classes_.push_back(spec.cls);
  }
  e.cls = cls->second;
  PreparedPrompt p = prepare(std::move(spec));
  if (!p.error.empty()) spdlog::warn("{}: request skipped: {}", where, p.error);
  if (p.encoded.double_bos) {
    spdlog::warn("{}: the prompt text starts with BOS and another BOS was added; set \"add_special_tokens\": false",
                 where);
  }
  e.failed = !p.error.empty();
  e.line_hash = prompt_hash(p.spec, p.encoded);
  if (e.failed) errors_.emplace(i, std::move(p.error));
  content_hash_ = fnv1a(fnv1a(fnv1a(fnv1a(content_hash_, p.encoded.text), "\x1f"), p.spec.id), p.spec.cls);
  content_hash_ = fnv1a(content_hash_, p.spec.mask);
  entries_.push_back(e);
  stop_point("tokenizing prompts");  // before reading the next prompt
}

const std::string& JobRequests::error(size_t i) const {
  static const std::string kNone;
  const auto it = errors_.find(i);
  return it == errors_.end() ? kNone : it->second;
}

PromptSpec JobRequests::spec(size_t i) const {
  if (!built_.empty()) return built_[i];
  const Entry& e = entries_[i];
  const Source& source = files_[e.file];
  PromptSpec spec = read_prompt_at(source.path, e.place);
  if (!source.cls.empty()) {
    // A class file's prompt: its class and CLASS: id, as when first read.
    spec.cls = source.cls;
    spec.id = source.cls + ":" + spec.id;
  }
  return spec;
}

PreparedPrompt JobRequests::prepare(size_t i) const {
  PreparedPrompt p = prepare(spec(i));
  if (prompt_hash(p.spec, p.encoded) != entries_[i].line_hash) {
    fail("{}:{}: the prompt changed while the job ran (the prompt file was rewritten?)", p.spec.file, p.spec.line);
  }
  return p;
}

PreparedPrompt JobRequests::prepare(PromptSpec spec) const {
  PreparedPrompt p;
  p.spec = std::move(spec);
  const PromptSpec& s = p.spec;
  const std::string where = fmt::format("{}:{} (id '{}')", s.file, s.line, s.id);
  const ChatTemplate* chat = nullptr;
  if (s.chat) {
    auto& templates = model_->chat_templates;
    auto it = templates.find(s.chat_template);
    if (it == templates.end()) {
      it = templates
               .emplace(s.chat_template, ChatTemplate::load(options_->model_dir, std::filesystem::path(s.chat_template)))
               .first;
    }
    if (it->second) {
      chat = &*it->second;
      check_chat_variables(*chat, s, where);
    }
  }
  // A prompt that cannot run fails alone; the job runs the others.
  p.error = s.error;
  if (p.error.empty()) {
    try {
      p.encoded = encode_prompt(model_->loaded->tokenizer, chat, s);
    } catch (const jinja::RaisedError& e) {
      p.error = fmt::format("the chat template refuses the conversation: {}", cut_utf8(e.message(), 1000));
    } catch (const jinja::TemplateError&) {
      throw;
    } catch (const TokenizerBroken&) {
      throw;  // a broken template (or one past its bounds) fails the job, not each request
    } catch (const Error& e) {
      p.error = e.what();
    }
  }
  const size_t positions = static_cast<size_t>(model_->config.max_position_embeddings);
  if (p.error.empty() && p.encoded.tokens.empty()) p.error = "the prompt encodes to no tokens";
  if (p.error.empty() && p.encoded.tokens.size() > positions) {
    p.error = fmt::format("the prompt has {} tokens but the model takes at most {} positions (max_position_embeddings)",
                          p.encoded.tokens.size(), positions);
  }
  if (!p.error.empty() && p.encoded.text.empty() && s.prompt) p.encoded.text = *s.prompt;
  return p;
}

GenerationRequest JobRequests::request(size_t i) const {
  GenerationRequest req;
  req.mask = entries_[i].mask;
  req.stream = i;
  req.cls = entries_[i].cls;
  return req;
}

}  // namespace mote
