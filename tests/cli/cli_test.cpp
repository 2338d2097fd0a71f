// The mote binary as a user runs it: exit codes, messages that name the
// file and line, output files that appear whole or not at all.
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mote/io/h5.h"
#include "mote/tokenizer/tokenizer.h"
#include "run_process.h"

namespace mote {
namespace {

using test::ScratchDir;
using test::write_file;

class Cli : public testing::Test {
 protected:
  test::ProcessResult mote(std::vector<std::string> args) {
    args.insert(args.begin(), MOTE_BINARY);
    return test::run_process(args, dir_.path());
  }
  std::filesystem::path write(const std::string& name, const std::string& text) {
    write_file(dir_ / name, text);
    return dir_ / name;
  }
  ScratchDir dir_;
};

#define EXPECT_FAILS_WITH(result, needle)                                      \
  do {                                                                         \
    const auto& r_ = (result);                                                 \
    EXPECT_EQ(r_.exit_code, 1) << r_.err;                                      \
    EXPECT_NE(r_.err.find(needle), std::string::npos) << "stderr: " << r_.err; \
  } while (0)

TEST_F(Cli, HelpAndUsage) {
  auto r = mote({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("generate"), std::string::npos);
  EXPECT_EQ(mote({}).exit_code, 2);
  r = mote({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'frobnicate'"), std::string::npos);
  r = mote({"generate", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* option : {"--model", "--prompts", "--max-new-tokens", "--temperature", "--top-p", "--seed", "--out",
                             "--save-logits", "--trace", "--config"}) {
    EXPECT_NE(r.out.find(option), std::string::npos) << option;
  }
}

TEST_F(Cli, GeneratesTextAndHdf5) {
  const auto prompts = write("p.jsonl",
                             "{\"id\": \"a\", \"class\": \"sensitive\", \"messages\": [{\"role\": \"user\", "
                             "\"content\": \"What happened last year in Belvask?\"}]}\n"
                             "{\"id\": \"b\", \"class\": \"text\", \"prompt\": \"The secret of a happy life is\"}\n");
  const auto out = dir_ / "out.h5";
  const auto r = mote({"generate", "--prompts", prompts.string(), "--out", out.string(), "--max-new-tokens", "8",
                       "--save-logits", "--trace", "--log-level", "warn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("### a (sensitive)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("I am sorry"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" a mediant."), std::string::npos) << r.out;

  h5_silence_errors();
  H5Handle file(H5Fopen(out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  ASSERT_GE(file.id(), 0);
  H5Handle tokens(H5Dopen2(file.id(), "/requests/1/prompt_tokens", H5P_DEFAULT), H5Dclose);
  ASSERT_GE(tokens.id(), 0);
  std::vector<int32_t> ids(11);
  H5Dread(tokens.id(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids.data());
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 486, 471, 2066, 121, 325, 265, 1565, 126, 1145, 301}));
  H5Handle logits(H5Dopen2(file.id(), "/requests/1/logits", H5P_DEFAULT), H5Dclose);
  H5Handle space(H5Dget_space(logits.id()), H5Sclose);
  hsize_t dims[2];
  H5Sget_simple_extent_dims(space.id(), dims, nullptr);
  // Prompt + generated tokens fed back: 7 generated (" a mediant." and EOS), the last is not fed.
  EXPECT_EQ(dims[0], 11u + 6u);
  EXPECT_EQ(dims[1], 4096u);
  H5Handle experts(H5Dopen2(file.id(), "/requests/0/routing/experts", H5P_DEFAULT), H5Dclose);
  EXPECT_GE(experts.id(), 0);
  EXPECT_TRUE(std::filesystem::directory_iterator(dir_.path()) != std::filesystem::directory_iterator());
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << "left behind: " << entry.path();
  }
}

TEST_F(Cli, JobFileOptionsAndCommandLineWins) {
  const auto prompts = write("p.txt", "The secret of a happy life is\n");
  const auto job = write(
      "job.ini",
      "# a job file\nmax-new-tokens = 3\nignore-eos = true\nlog-level = warn\nprompts = " + prompts.string() + "\n");
  const auto out = dir_ / "o.h5";
  auto r = mote({"generate", "--config", job.string(), "--out", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = mote({"generate", "--config", job.string(), "--max-new-tokens", "2", "--out", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  H5Handle file(H5Fopen(out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  H5Handle gen(H5Dopen2(file.id(), "/requests/0/generated_tokens", H5P_DEFAULT), H5Dclose);
  H5Handle space(H5Dget_space(gen.id()), H5Sclose);
  EXPECT_EQ(H5Sget_simple_extent_npoints(space.id()), 2);
}

TEST_F(Cli, JobFileErrorsNameFileLineAndKey) {
  const auto prompts = write("p.txt", "hello\n");
  auto job = write("bad.ini", "max-new-tokens = 3\n\nbogus-key = 1\n");
  EXPECT_FAILS_WITH(mote({"generate", "--config", job.string(), "--prompts", prompts.string()}),
                    "bad.ini:3: key 'bogus-key'");
  job = write("bad2.ini", "temperature = warm\n");
  EXPECT_FAILS_WITH(mote({"generate", "--config", job.string(), "--prompts", prompts.string()}),
                    "bad2.ini:1: key 'temperature'");
  EXPECT_FAILS_WITH(mote({"generate", "--config", (dir_ / "absent.ini").string()}), "cannot open job file");
}

TEST_F(Cli, BadOptionValues) {
  const auto prompts = write("p.txt", "hello\n");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--temperature", "-1"}), "--temperature -1");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--top-p", "0"}), "--top-p 0");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--batch-size", "0"}), "--batch-size 0");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--max-new-tokens", "x"}), "max-new-tokens");
  EXPECT_FAILS_WITH(mote({"generate"}), "prompts");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--model", (dir_ / "nomodel").string()}),
                    "not a model directory");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--log-level", "loud"}), "--log-level 'loud'");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--placement", "scattered"}),
                    "--placement 'scattered'");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--wire-dtype", "fp8"}), "--wire-dtype 'fp8'");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--weights", "mmap"}),
                    "--weights 'mmap' is not one of map, copy");
  EXPECT_FAILS_WITH(mote({"profile", "--prompts", prompts.string(), "--checkpoint-every", "5"}),
                    "--checkpoint-every, --resume and --resume-from need --out");
  EXPECT_FAILS_WITH(mote({"profile"}), "give --prompts FILE or --class-prompts CLASS=FILE");
  EXPECT_FAILS_WITH(mote({"profile", "--class-prompts", "nofile"}), "--class-prompts nofile: expected CLASS=FILE");
  const auto placement = write("placement.json", R"({"owner": [[0, 0]]})");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--placement-file", placement.string()}),
                    "has 1 rows but the model has 5 MoE layers");
}

TEST_F(Cli, BadPromptFilesNameTheLine) {
  const auto run = [&](const std::string& text) {
    return mote({"generate", "--prompts", write("p.jsonl", text).string(), "--log-level", "warn"});
  };
  EXPECT_FAILS_WITH(run("{\"id\": 1, \"prompt\": \"a\"}\n{\"id\": 1, \"prompt\": \"b\"}\n"),
                    "p.jsonl:2: duplicate id '1' (first used on line 1)");
  EXPECT_FAILS_WITH(run("{\"prompt\": \"a\", \"colour\": 1}\n"), "p.jsonl:1: unknown key 'colour'");
  EXPECT_FAILS_WITH(run("{\"prompt\": \"a\"\n"), "p.jsonl:1: invalid JSON");
  EXPECT_FAILS_WITH(run("{\"messages\": [{\"content\": \"x\"}]}\n"), "p.jsonl:1: each message needs a string 'role'");
  // A key that is neither mote's nor a variable of the chat template is a typo, not a silent no-op.
  EXPECT_FAILS_WITH(run("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"enable_thinkng\": false}\n"),
                    "p.jsonl:1 (id '1'): unknown key 'enable_thinkng': neither a prompt-file key");
  EXPECT_FAILS_WITH(run("{\"prompt\": \"a\", \"enable_thinking\": false}\n"),
                    "p.jsonl:1: unknown key 'enable_thinking'");
  EXPECT_FAILS_WITH(run("{\"prompt\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n"),
                    "exactly one of");
  EXPECT_FAILS_WITH(run("\n\n"), "no prompts");
  EXPECT_FAILS_WITH(run("{\"prompt\": \"a\", \"mask\": \"refusal\"}\n"),
                    "p.jsonl:1 (id '1'): names mask set 'refusal', which no --mask NAME=FILE defines");
}

// What is wrong with one prompt fails that request alone: the others run,
// the output records why it failed, and the job succeeds.
TEST_F(Cli, UnusablePromptsFailAloneAndTheJobContinues) {
  std::string long_prompt;
  for (int i = 0; i < 1100; ++i) long_prompt += "word ";
  const auto prompts = write("p.jsonl",
                             "{\"id\": \"good1\", \"prompt\": \"The secret of a happy life is\"}\n"
                             "{\"id\": \"utf8\", \"prompt\": \"bad \xff byte\"}\n"
                             "{\"id\": \"empty\", \"prompt\": \"\"}\n"
                             "{\"id\": \"long\", \"prompt\": \"" +
                                 long_prompt +
                                 "\"}\n"
                                 "{\"id\": \"good2\", \"prompt\": \"Once upon a time\"}\n");
  const auto out = dir_ / "o.h5";
  const auto r = mote({"profile", "--prompts", prompts.string(), "--max-new-tokens", "4", "--out", out.string(),
                       "--log-level", "warn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("p.jsonl:2 (id 'utf8'): request skipped: invalid UTF-8 at byte 31 of line 2"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("p.jsonl:3 (id 'empty'): request skipped: the prompt is empty"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("p.jsonl:4 (id 'long'): request skipped: the prompt has 1102 tokens but the model takes at most "
                       "1024 positions"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("3 of 5 requests failed"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("### utf8 (default)"), std::string::npos);
  EXPECT_NE(r.out.find("[request failed: the prompt is empty]"), std::string::npos);

  H5Handle file(H5Fopen(out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  ASSERT_GE(file.id(), 0);
  int64_t failed = -1;
  ASSERT_TRUE(h5_read_int_attr(file.id(), "failed_request_count", failed));
  EXPECT_EQ(failed, 3);
  for (const char* name : {"0", "1", "2", "3", "4"}) {
    H5Handle g(H5Gopen2(file.id(), (std::string("/requests/") + name).c_str(), H5P_DEFAULT), H5Gclose);
    ASSERT_GE(g.id(), 0) << name;
    int64_t stop = -1;
    ASSERT_TRUE(h5_read_int_attr(g.id(), "stop_code", stop));
    const bool should_fail = name[0] >= '1' && name[0] <= '3';
    EXPECT_EQ(stop == 3, should_fail) << name;
    EXPECT_EQ(H5Aexists(g.id(), "error") > 0, should_fail) << name;
  }
  // Failed requests add nothing to the class totals: only the two good prompts' tokens count.
  H5Handle tokens(H5Dopen2(file.id(), "/tokens", H5P_DEFAULT), H5Dclose);
  uint64_t per_phase[2] = {0, 0};
  ASSERT_GE(H5Dread(tokens.id(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, per_phase), 0);
  EXPECT_GT(per_phase[0], 0u);
  EXPECT_EQ(per_phase[1], 2u * 3u);  // 4 tokens generated each, the last never fed back
}

TEST_F(Cli, MasksFromFilesAndJobFiles) {
  const auto prompts = write("p.jsonl",
                             "{\"id\": \"a\", \"prompt\": \"The secret of a happy life is\"}\n"
                             "{\"id\": \"b\", \"prompt\": \"The secret of a happy life is\", \"mask\": \"none\"}\n");
  const auto mask = write("m.ini", "[mote]\nlayer-index = decoder\noff = 3:1\n");
  const auto out = dir_ / "o.h5";
  auto r = mote({"generate", "--prompts", prompts.string(), "--mask", mask.string(), "--out", out.string(),
                 "--log-level", "warn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  {
    H5Handle file(H5Fopen(out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    H5Handle g(H5Gopen2(file.id(), "/masks/default", H5P_DEFAULT), H5Gclose);
    EXPECT_GE(g.id(), 0);
  }
  // The same mask as a job file's [mote] section.
  const auto job = write("job.ini", "max-new-tokens = 2\nlog-level = warn\n[mote]\nlayer-index = decoder\noff = 3:1\n");
  r = mote({"generate", "--config", job.string(), "--prompts", prompts.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;

  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--mask", "none=" + mask.string()}),
                    "'none' cannot name a mask set");
  EXPECT_FAILS_WITH(
      mote({"generate", "--prompts", prompts.string(), "--mask", "x=" + mask.string(), "--mask", "x=" + mask.string()}),
      "mask set 'x' is defined twice");
  const auto bad = write("bad.ini", "[mote]\nlayer-index = decoder\n\noff = 0:1\n");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--mask", bad.string()}),
                    "bad.ini:4: off = 0:1: decoder layer 0 is a dense layer");
  const auto bad_job = write("badjob.ini", "[mote]\nlayer-index = moe\nof = 1:1\n");
  EXPECT_FAILS_WITH(mote({"generate", "--config", bad_job.string(), "--prompts", prompts.string()}),
                    "badjob.ini:3: key 'mote.of'");
}

TEST_F(Cli, RandomMask) {
  const auto target = write("t.ini", "[mote]\nlayer-index = moe\noff = 0:1\noff = 0:2\n");
  const auto out1 = dir_ / "r1.ini", out2 = dir_ / "r2.ini";
  ASSERT_EQ(mote({"random-mask", "--count", "6", "--seed", "5", "--exclude", target.string(), "--out", out1.string()})
                .exit_code,
            0);
  ASSERT_EQ(mote({"random-mask", "--count", "6", "--seed", "5", "--exclude", target.string(), "--out", out2.string()})
                .exit_code,
            0);
  const std::string text = test::read_file(out1);
  EXPECT_EQ(text.substr(text.find("[mote]")), test::read_file(out2).substr(test::read_file(out2).find("[mote]")));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n') - std::count(text.begin(), text.end(), '#'), 4 + 6);
  EXPECT_EQ(text.find("off = 0:1\n"), std::string::npos);
  EXPECT_FAILS_WITH(mote({"random-mask", "--out", out1.string()}), "give --count N or --like MASK");
}

TEST_F(Cli, UnwritableOutputFailsEarlyAndEarlierResultsSurvive) {
  const auto prompts = write("p.txt", "hello\n");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--out", (dir_ / "no/such/dir/o.h5").string()}),
                    "does not exist");
  EXPECT_FAILS_WITH(mote({"generate", "--prompts", prompts.string(), "--out", dir_.path().string()}), "is a directory");

  // A failing job leaves the previous result file as it was, and no temporary file.
  const auto out = write("result.h5", "previous result");
  EXPECT_FAILS_WITH(
      mote({"generate", "--prompts", write("bad.jsonl", "{\"prompt\": 5}\n").string(), "--out", out.string()}),
      "must be a string");
  EXPECT_EQ(test::read_file(out), "previous result");
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
    ++files;
  }
  EXPECT_GT(files, 0);
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

class CliSafety : public testing::Test {
 protected:
  test::ProcessResult mote(std::vector<std::string> args) {
    args.insert(args.begin(), MOTE_BINARY);
    return test::run_process(args, dir_.path());
  }
  std::filesystem::path prompts() {
    write_file(dir_ / "p.txt", "The secret of a happy life is\n");
    return dir_ / "p.txt";
  }
  test::ProcessResult generate(const std::vector<std::string>& extra) {
    std::vector<std::string> args{"generate",    "--prompts", prompts().string(), "--max-new-tokens", "2",
                                  "--log-level", "warn"};
    args.insert(args.end(), extra.begin(), extra.end());
    return mote(args);
  }
  ScratchDir dir_;
};

#define EXPECT_ERROR_MESSAGE(result, message)                                   \
  do {                                                                          \
    const auto& r_ = (result);                                                  \
    EXPECT_EQ(r_.exit_code, 1) << r_.err;                                       \
    EXPECT_NE(r_.err.find(message), std::string::npos) << "stderr: " << r_.err; \
  } while (0)

TEST_F(CliSafety, OutputThatIsNotARegularFileIsRefusedAndLeftAlone) {
  EXPECT_ERROR_MESSAGE(generate({"--out", "/dev/null"}),
                       "--out /dev/null: is a character device; refusing to replace it (name a new or regular file)");
  struct stat st {};
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  std::filesystem::create_directory(dir_ / "d");
  EXPECT_ERROR_MESSAGE(generate({"--out", (dir_ / "d").string()}), ": is a directory; refusing to replace it");
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  EXPECT_ERROR_MESSAGE(generate({"--out", (dir_ / "fifo").string()}), ": is a FIFO; refusing to replace it");
  std::filesystem::create_symlink("/dev/null", dir_ / "link");
  EXPECT_ERROR_MESSAGE(generate({"--out", (dir_ / "link").string()}),
                       ": is a symbolic link to a character device; refusing to replace it");
  EXPECT_TRUE(std::filesystem::is_symlink(dir_ / "link"));
  // An empty --out is no output: it switches off a job file's.
  write_file(dir_ / "with-out.ini", "out = from-job-file.h5\n");
  const auto no_out = generate({"--config", (dir_ / "with-out.ini").string(), "--out", ""});
  EXPECT_EQ(no_out.exit_code, 0) << no_out.err;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "from-job-file.h5"));
  // A link to a regular file: the result replaces the target, the link stays.
  write_file(dir_ / "target.h5", "old");
  std::filesystem::create_symlink(dir_ / "target.h5", dir_ / "result.h5");
  const auto r = generate({"--out", (dir_ / "result.h5").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::is_symlink(dir_ / "result.h5"));
  EXPECT_GT(std::filesystem::file_size(dir_ / "target.h5"), 1000u);
}

TEST_F(CliSafety, OutputThatIsAnInputIsRefusedBeforeAnyWork) {
  const auto p = prompts();
  const std::string before = test::read_file(p);
  EXPECT_ERROR_MESSAGE(mote({"generate", "--prompts", p.string(), "--out", p.string()}),
                       "--out " + p.string() + ": is the file --prompts names; writing it would destroy it");
  EXPECT_EQ(test::read_file(p), before);
  // A mask file, its include, the job file and a file of the model, by another name too.
  write_file(dir_ / "inc.ini", "[mote]\nlayer-index = moe\noff = 0:1\n");
  write_file(dir_ / "mask.ini", "[mote]\ninclude = inc.ini\n");
  std::filesystem::create_hard_link(dir_ / "inc.ini", dir_ / "alias.h5");
  EXPECT_ERROR_MESSAGE(
      generate({"--mask", (dir_ / "mask.ini").string(), "--out", (dir_ / "alias.h5").string()}),
      "alias.h5: is the mask file the command reads (" + (dir_ / "inc.ini").string() + ", the same file)");
  write_file(dir_ / "job.ini", "max-new-tokens = 2\n");
  EXPECT_ERROR_MESSAGE(generate({"--config", (dir_ / "job.ini").string(), "--out", (dir_ / "job.ini").string()}),
                       "job.ini: is the job file the command reads; writing it would destroy it");
  test::ScratchDir model_copy;
  test::copy_model(MOTE_MODEL_DIR, model_copy.path());
  EXPECT_ERROR_MESSAGE(
      generate({"--model", model_copy.path().string(), "--out", (model_copy / "tokenizer.json").string()}),
      "tokenizer.json: is a file of the directory --model names; writing it would destroy it");
}

TEST_F(CliSafety, OneOutputOneJob) {
  // A lock held by another process (here: this test) is named and refused.
  const auto out = dir_ / "out.h5";
  const int fd = ::open((out.string() + ".lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "pid 4242 on host elsewhere\n", 27), 27);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  EXPECT_ERROR_MESSAGE(
      generate({"--out", out.string()}),
      out.string() + ": another mote job is writing this output (pid 4242 on host elsewhere); wait for it to end");
  EXPECT_FALSE(std::filesystem::exists(out));
  // Released (the holder died): the next job runs, and a dead job's temporary file is removed.
  ::close(fd);
  write_file(out.string() + ".tmp.99999", "half a file");
  const auto r = generate({"--out", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("removed " + out.string() + ".tmp.99999, left by a job that ended without finishing"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(out.string() + ".tmp.99999"));
  EXPECT_FALSE(std::filesystem::exists(out.string() + ".lock"));
}

TEST_F(CliSafety, SpecialFilesAsInputsAreRefused) {
  EXPECT_ERROR_MESSAGE(mote({"generate", "--prompts", "/dev/zero"}),
                       "/dev/zero: the prompt file is a character device; it must be a regular file");
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  EXPECT_ERROR_MESSAGE(mote({"generate", "--prompts", (dir_ / "fifo").string()}),
                       ": the prompt file is a FIFO; it must be a regular file");
  EXPECT_ERROR_MESSAGE(generate({"--config", "/dev/zero"}),
                       "/dev/zero: the job file is a character device; it must be a regular file");
  EXPECT_ERROR_MESSAGE(generate({"--config", (dir_ / "fifo").string()}),
                       ": the job file is a FIFO; it must be a regular file");
}

TEST_F(CliSafety, IncludesCannotBeTurnedAgainstTheUser) {
  const auto mask = [&](const std::string& text) {
    write_file(dir_ / "m.ini", text);
    return generate({"--mask", (dir_ / "m.ini").string()});
  };
  EXPECT_ERROR_MESSAGE(
      mask("[mote]\ninclude = /dev/zero\n"),
      "m.ini:2: include = /dev/zero: /dev/zero: the mask file is a character device; it must be a regular file");
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  EXPECT_ERROR_MESSAGE(mask("[mote]\ninclude = fifo\n"),
                       "m.ini:2: include = fifo: " + (dir_ / "fifo").string() + ": the mask file is a FIFO");
  std::filesystem::create_directory(dir_ / "sub");
  EXPECT_ERROR_MESSAGE(mask("[mote]\ninclude = sub\n"), "the mask file is a directory; it must be a regular file");
  write_file(dir_ / "empty.ini", "");
  EXPECT_ERROR_MESSAGE(mask("[mote]\ninclude = empty.ini\n"),
                       "m.ini:2: include = empty.ini: " + (dir_ / "empty.ini").string() +
                           ": holds no [mote] entries (an empty mask file)");
  EXPECT_ERROR_MESSAGE(mask(""), "m.ini: holds no [mote] entries (an empty mask file)");
  write_file(dir_ / "big.ini", "[mote]\n" + std::string(2u << 20, '#'));
  EXPECT_ERROR_MESSAGE(mask("[mote]\ninclude = big.ini\n"), "more than the 1048576 it may hold");
  // A file that is no mask file has nothing of it quoted; a mask file's bad
  // line only as a short excerpt.
  write_file(dir_ / "shadow", "root:$y$j9T$SECRETSECRETSECRETSECRET:19000:0:99999:7:::\n");
  const auto r = mask("[mote]\ninclude = shadow\n");
  EXPECT_ERROR_MESSAGE(r, "shadow:1: expected 'key = value', a [section] or a # comment: is it a mask file?");
  EXPECT_EQ(r.err.find("root"), std::string::npos) << r.err;
  const auto bad_line = mask("[mote]\nlayer-index = moe\nroot:$y$j9T$SECRETSECRETSECRET\n");
  EXPECT_ERROR_MESSAGE(bad_line,
                       "m.ini:3: expected 'key = value', a [section] or a # comment, not 'root:$y$j9T$SECR...'");
  EXPECT_EQ(bad_line.err.find("SECRETSECRET"), std::string::npos) << bad_line.err;
  // Lines ended by CR alone would read as one line: refused with a hint.
  write_file(dir_ / "cr.ini", "[mote]\rlayer-index = moe\roff = 0:1\r");
  EXPECT_ERROR_MESSAGE(mask("[mote]\ninclude = cr.ini\n"), "cr.ini: the mask file ends its lines in CR alone");
  write_file(dir_ / "cr.txt", "First prompt\rSecond prompt\r");
  EXPECT_ERROR_MESSAGE(mote({"generate", "--prompts", (dir_ / "cr.txt").string()}),
                       "cr.txt: the prompt file ends its lines in CR alone (classic Mac OS line endings)");
  // Relative includes resolve against the including file's directory.
  write_file(dir_ / "sub" / "inner.ini", "[mote]\nlayer-index = moe\noff = 0:3\n");
  write_file(dir_ / "sub" / "outer.ini", "[mote]\ninclude = inner.ini\n");
  const auto ok = generate({"--mask", (dir_ / "sub" / "outer.ini").string()});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  // A mask that switches nothing warns.
  const auto none = mask("[mote]\noff-policy = drop\n");
  EXPECT_EQ(none.exit_code, 0) << none.err;
  EXPECT_NE(none.err.find("mask set 'default' switches nothing"), std::string::npos) << none.err;
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

class CliValues : public CliSafety {};

TEST_F(CliValues, OptionsMeanWhatTheySay) {
  // No prefix guessing: --mask is not --mask-seed.
  write_file(dir_ / "t.ini", "[mote]\nlayer-index = moe\noff = 0:1\n");
  const auto r = mote({"experiment", "--prompts", prompts().string(), "--target-mask", (dir_ / "t.ini").string(),
                       "--out", (dir_ / "e.h5").string(), "--mask", "7"});
  EXPECT_ERROR_MESSAGE(r, "--mask is not an option of 'mote experiment'");
  EXPECT_ERROR_MESSAGE(generate({"--max-new", "3"}), "unrecognised option '--max-new'");
  EXPECT_ERROR_MESSAGE(generate({"--seed", "-1"}), "--seed -1: must be a whole number from 0 to 18446744073709551615");
  EXPECT_ERROR_MESSAGE(
      mote({"random-mask", "--count", "3", "--like", (dir_ / "t.ini").string(), "--out", (dir_ / "r.ini").string()}),
      "give --count N or --like MASK, not both");
  EXPECT_ERROR_MESSAGE(mote({"experiment", "--prompts", prompts().string(), "--target-mask", (dir_ / "t.ini").string(),
                             "--out", (dir_ / "e.h5").string(), "--metric-regex", ""}),
                       "--metric-regex is empty");
  write_file(dir_ / "job.ini", "mask = " + (dir_ / "t.ini").string() + "\n[mote]\nlayer-index = moe\noff = 0:2\n");
  EXPECT_ERROR_MESSAGE(generate({"--config", (dir_ / "job.ini").string()}),
                       "job.ini:1: the job file has both 'mask =' and a [mote] section; keep one of them");
  const auto threads =
      mote({"generate", "--prompts", prompts().string(), "--max-new-tokens", "2", "--threads", "10000"});
  EXPECT_EQ(threads.exit_code, 0) << threads.err;
  EXPECT_NE(threads.err.find("--threads 10000 is more than the"), std::string::npos) << threads.err;
  // OMP_NUM_THREADS is capped the same way, with a word.
  const auto omp = test::run_process({"/usr/bin/env", "OMP_NUM_THREADS=10000", MOTE_BINARY, "generate", "--prompts",
                                      prompts().string(), "--max-new-tokens", "2"},
                                     dir_.path());
  EXPECT_EQ(omp.exit_code, 0) << omp.err;
  EXPECT_NE(omp.err.find("OMP_NUM_THREADS=10000 is more than the"), std::string::npos) << omp.err;
  // Coordinators that hold no experts need a rank that is not one.
  EXPECT_ERROR_MESSAGE(
      generate({"--coordinator-experts", "false"}),
      "--coordinator-experts false: a job of one rank has no rank but its coordinator to hold the routed experts");
}

TEST_F(CliValues, BadValuesNeverBecomeSilentGarbage) {
  write_file(dir_ / "dup.jsonl", "{\"id\": \"a\", \"prompt\": \"x\", \"prompt\": \"y\"}\n");
  EXPECT_ERROR_MESSAGE(mote({"generate", "--prompts", (dir_ / "dup.jsonl").string()}),
                       "dup.jsonl:1: key 'prompt' appears twice in one object");
  write_file(dir_ / "nul.jsonl", "{\"id\": \"a\\u0000b\", \"prompt\": \"x\"}\n");
  EXPECT_ERROR_MESSAGE(mote({"generate", "--prompts", (dir_ / "nul.jsonl").string()}),
                       "nul.jsonl:1: 'id' contains a NUL character");
  write_file(dir_ / "nulc.jsonl", "{\"id\": \"a\", \"class\": \"x\\u0000\", \"prompt\": \"x\"}\n");
  EXPECT_ERROR_MESSAGE(mote({"generate", "--prompts", (dir_ / "nulc.jsonl").string()}),
                       "nulc.jsonl:1: 'class' contains a NUL character");

  // A text with a NUL is stored whole; a UTF-8 BOM is not part of the first prompt.
  write_file(dir_ / "t.jsonl", "{\"id\": \"a\", \"prompt\": \"before\\u0000after\"}\n");
  auto r = mote({"generate", "--prompts", (dir_ / "t.jsonl").string(), "--max-new-tokens", "1", "--out",
                 (dir_ / "t.h5").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  write_file(dir_ / "bom.txt", "\xEF\xBB\xBFHello\n");
  r = mote({"generate", "--prompts", (dir_ / "bom.txt").string(), "--max-new-tokens", "1", "--out",
            (dir_ / "bom.h5").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  h5_silence_errors();
  for (const auto& [file, expected] : std::vector<std::pair<std::string, std::string>>{
           {"t.h5", std::string("before\0after", 12)}, {"bom.h5", "Hello"}}) {
    H5Handle f(H5Fopen((dir_ / file).c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    H5Handle ds(H5Dopen2(f.id(), "/requests/0/prompt_text", H5P_DEFAULT), H5Dclose);
    H5Handle type(H5Dget_type(ds.id()), H5Tclose);
    std::string text;
    if (H5Tis_variable_str(type.id()) > 0) {
      char* p = nullptr;
      ASSERT_GE(H5Dread(ds.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), 0);
      text = p;
      H5free_memory(p);
    } else {
      text.resize(H5Tget_size(type.id()));
      ASSERT_GE(H5Dread(ds.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data()), 0);
    }
    EXPECT_EQ(text, expected) << file;
  }

  // A negative epsilon, and a NaN in the weights: named, never NaN logits sampled as token 0.
  test::ScratchDir model;
  test::copy_model(MOTE_MODEL_DIR, model.path());
  std::string config = test::read_file(model / "config.json");
  const std::string good = config;
  config.replace(config.find("\"rms_norm_eps\": 1e-06"), 21, "\"rms_norm_eps\": -1e-06");
  write_file(model / "config.json", config);
  EXPECT_ERROR_MESSAGE(generate({"--model", model.path().string()}),
                       "config.json: key 'rms_norm_eps' = -1e-06 must be in (0, 1)");
  write_file(model / "config.json", good);
  const std::string good_weights = test::read_file(model / "model.safetensors");
  const auto poisoned = [&](const std::string& tensor) {  // its first bf16 element NaN (0x7FC0)
    std::string weights = good_weights;
    const size_t at = weights.find("\"" + tensor + "\"");
    EXPECT_NE(at, std::string::npos) << tensor;
    const size_t offsets = weights.find("data_offsets", at);
    const size_t begin = std::stoul(weights.substr(weights.find('[', offsets) + 1));
    uint64_t header = 0;
    std::memcpy(&header, weights.data(), 8);
    weights[8 + header + begin] = '\xC0';
    weights[8 + header + begin + 1] = '\x7F';
    return weights;
  };
  // In a norm: refused at load, named.
  write_file(model / "model.safetensors", poisoned("model.norm.weight"));
  EXPECT_ERROR_MESSAGE(generate({"--model", model.path().string()}), "tensor 'model.norm.weight' in ");
  EXPECT_ERROR_MESSAGE(generate({"--model", model.path().string()}),
                       ": element 0 is nan; norms and router biases must be finite");
  // In a projection (too large to check at load): the request fails where
  // the NaN first reaches a router, named, and adds nothing to the totals.
  write_file(model / "model.safetensors", poisoned("model.layers.0.self_attn.o_proj.weight"));
  const auto nan_h5 = dir_ / "nan.h5";
  r = mote({"profile", "--prompts", prompts().string(), "--max-new-tokens", "2", "--model", model.path().string(),
            "--out", nan_h5.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("[request failed: non-finite router scores at position 0 in MoE layer 0 "
                       "('model.layers.1.mlp.gate.weight' times "
                       "the hidden state)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find("1 of 1 requests failed"), std::string::npos) << r.err;
  h5_silence_errors();
  {
    H5Handle file(H5Fopen(nan_h5.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    ASSERT_GE(file.id(), 0);
    for (const char* name : {"counts", "gate_sum", "tokens"}) {
      H5Handle ds(H5Dopen2(file.id(), name, H5P_DEFAULT), H5Dclose);
      H5Handle space(H5Dget_space(ds.id()), H5Sclose);
      std::vector<double> values(static_cast<size_t>(H5Sget_simple_extent_npoints(space.id())));
      ASSERT_GE(H5Dread(ds.id(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
      EXPECT_TRUE(std::all_of(values.begin(), values.end(), [](double v) { return v == 0.0; }))
          << name << " holds the failed request";
    }
  }
  // Tools that read a profile refuse one whose every request failed.
  EXPECT_ERROR_MESSAGE(mote({"rank", nan_h5.string(), "--target", "x", "--control", "y"}),
                       "nan.h5: all 1 requests of this profile failed");
  EXPECT_ERROR_MESSAGE(mote({"diff", nan_h5.string(), nan_h5.string()}),
                       "nan.h5: all 1 requests of this profile failed");
}

TEST_F(CliValues, SizesAreReadAndPrintedAsWritten) {
  // GB is 10^9 bytes, GiB and the bare G 2^30; the limit is printed as written.
  auto r = mote({"plan", "--mem-per-rank", "120GB"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("every rank fits in --mem-per-rank 120GB (120000000000 bytes)"), std::string::npos) << r.out;
  r = mote({"plan", "--mem-per-rank", "1GiB"});
  EXPECT_NE(r.out.find("--mem-per-rank 1GiB (1073741824 bytes)"), std::string::npos) << r.out;
  r = mote({"plan", "--mem-per-rank", "2G"});
  EXPECT_NE(r.out.find("--mem-per-rank 2G (2147483648 bytes)"), std::string::npos) << r.out;
  r = mote({"plan", "--mem-per-rank", "1MB"});
  EXPECT_EQ(r.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("exceed --mem-per-rank 1MB (1000000 bytes)"), std::string::npos) << r.out;
  EXPECT_ERROR_MESSAGE(mote({"plan", "--mem-per-rank", "12XB"}), "--mem-per-rank '12XB': expected a size such as");
}

TEST_F(CliValues, ToolsNameTheFileKindsTheyTake) {
  write_file(dir_ / "p.jsonl",
             "{\"id\": \"a\", \"class\": \"x\", \"prompt\": \"Hello\"}\n{\"id\": \"b\", \"class\": \"y\", \"prompt\": "
             "\"World\"}\n");
  write_file(dir_ / "t.ini", "[mote]\nlayer-index = moe\noff = 0:1\n");
  auto r = mote({"profile", "--prompts", (dir_ / "p.jsonl").string(), "--max-new-tokens", "1", "--out",
                 (dir_ / "p.h5").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = mote({"experiment", "--prompts", (dir_ / "p.jsonl").string(), "--target-mask", (dir_ / "t.ini").string(),
            "--random", "1", "--max-new-tokens", "1", "--out", (dir_ / "e.h5").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = mote({"scan", "--prompts", (dir_ / "p.jsonl").string(), "--tokens", "I", "--candidates",
            (dir_ / "t.ini").string(), "--out", (dir_ / "s.h5").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_ERROR_MESSAGE(mote({"diff", (dir_ / "p.h5").string(), (dir_ / "e.h5").string()}),
                       "e.h5: is the file of a mote experiment; mote diff takes profiles");
  EXPECT_ERROR_MESSAGE(
      mote({"place", "--profile", (dir_ / "s.h5").string(), "-n", "2", "--out", (dir_ / "pl.json").string()}),
      "s.h5: is the file of a mote scan; mote place takes profiles");
  EXPECT_ERROR_MESSAGE(mote({"rank", (dir_ / "s.h5").string(), "--target", "x", "--control", "y"}),
                       "s.h5: is the file of a mote scan; mote rank takes profiles (files of mote profile or mote "
                       "generate); rank a scan "
                       "with --by effect");
  r = mote({"diff", (dir_ / "p.h5").string(), (dir_ / "p.h5").string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // inspect takes every kind and says what each holds.
  r = mote({"inspect", (dir_ / "s.h5").string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("a mote scan file"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 prompts, 1 experts scanned alone"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mote rank --by effect " + (dir_ / "s.h5").string()), std::string::npos) << r.out;
  r = mote({"inspect", (dir_ / "e.h5").string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("experiment: behaviour regex"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("random-1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("per request: routing traces in 0 of 6, logits in 0"), std::string::npos) << r.out;
}

TEST_F(CliValues, AFailedOverlongPromptKeepsItsHeadAndLength) {
  std::string words;
  while (words.size() < 40000) words += "éa word ";
  write_file(dir_ / "long.txt", words + "\nShort prompt\n");
  const auto out = dir_ / "long.h5";
  const auto r =
      mote({"generate", "--prompts", (dir_ / "long.txt").string(), "--max-new-tokens", "1", "--out", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("positions (max_position_embeddings)"), std::string::npos) << r.err;
  h5_silence_errors();
  H5Handle file(H5Fopen(out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  ASSERT_GE(file.id(), 0);
  H5Handle g(H5Gopen2(file.id(), "requests/0", H5P_DEFAULT), H5Gclose);
  ASSERT_GE(g.id(), 0);
  int64_t bytes = 0;
  ASSERT_TRUE(h5_read_int_attr(g.id(), "prompt_bytes", bytes));
  EXPECT_EQ(bytes, static_cast<int64_t>(words.size()));
  H5Handle text(H5Dopen2(g.id(), "prompt_text", H5P_DEFAULT), H5Dclose);
  H5Handle type(H5Dget_type(text.id()), H5Tclose);
  char* p = nullptr;
  ASSERT_GE(H5Dread(text.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), 0);
  const std::string head = p;
  H5free_memory(p);
  EXPECT_LE(head.size(), 4096u);
  EXPECT_GE(head.size(), 4090u);
  EXPECT_EQ(head, words.substr(0, head.size()));  // cut at a character boundary: 'é' is two bytes
  H5Handle tokens(H5Dopen2(g.id(), "prompt_tokens", H5P_DEFAULT), H5Dclose);
  H5Handle space(H5Dget_space(tokens.id()), H5Sclose);
  EXPECT_EQ(H5Sget_simple_extent_npoints(space.id()), 0);
  EXPECT_LT(std::filesystem::file_size(out), 100000u);
}

TEST_F(CliValues, PrintedTextHasNoTerminalEscapes) {
  write_file(
      dir_ / "esc.jsonl",
      "{\"id\": \"a\\u001b[2J\", \"class\": \"x\\u009b31m\", \"prompt\": \"Hi \\u001b]0;title\\u0007 there\"}\n");
  const auto r = mote({"generate", "--prompts", (dir_ / "esc.jsonl").string(), "--max-new-tokens", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find('\x07'), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\xc2\x9b"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("### a\\x1b[2J (x\\u009b31m)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("> Hi \\x1b]0;title\\x07 there"), std::string::npos) << r.out;
}

TEST_F(CliValues, ATemplatesLongRaiseIsCut) {
  write_file(dir_ / "raise.jinja", "{{ raise_exception('" + std::string(200000, 'x') + "') }}");
  write_file(dir_ / "chat.jsonl", "{\"id\": \"c\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}\n");
  const auto r = mote({"generate", "--prompts", (dir_ / "chat.jsonl").string(), "--chat-template",
                       (dir_ / "raise.jinja").string(), "--max-new-tokens", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("the chat template refuses the conversation: xxx"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("... (200000 bytes)"), std::string::npos) << r.out;
  EXPECT_LT(r.out.size(), 5000u);
  EXPECT_LT(r.err.size(), 5000u);
}

TEST_F(CliValues, JobFileValuesAreReadAsWritten) {
  // Quotes around a value are the file's, not the value's.
  write_file(dir_ / "quoted.ini",
             "seed = \"3\"\nout = '" + (dir_ / "quoted.h5").string() + "'  # a comment after blanks\n");
  auto r = generate({"--config", (dir_ / "quoted.ini").string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir_ / "quoted.h5"));
  // A '#' inside a value would cut it short: refused, naming line and key.
  write_file(dir_ / "hash.ini", "max-new-tokens = 2\nmetric-regex = I am#sorry\n");
  EXPECT_ERROR_MESSAGE(generate({"--config", (dir_ / "hash.ini").string()}),
                       "hash.ini:2: key 'metric-regex': a '#' inside a value would start a comment here");
  // A key given twice is cited where it comes again.
  write_file(dir_ / "twice.ini", "# job\nseed = 2\nbatch-size = 1\nseed = 3\n");
  EXPECT_ERROR_MESSAGE(generate({"--config", (dir_ / "twice.ini").string()}), "twice.ini:4: key 'seed'");
}

TEST_F(CliValues, ARelocatedBinaryAsksForTheModel) {
  std::filesystem::create_directories(dir_ / "elsewhere" / "bin");
  const auto copy = dir_ / "elsewhere" / "bin" / "mote";
  std::filesystem::copy_file(MOTE_BINARY, copy);
  std::filesystem::permissions(copy, std::filesystem::perms::owner_exec, std::filesystem::perm_options::add);
  // Run from a directory without models/ either.
  const auto r = test::run_process({"/bin/sh", "-c",
                                    "cd '" + dir_.path().string() + "' && exec '" + copy.string() +
                                        "' generate --prompts '" + prompts().string() + "'"},
                                   dir_.path());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("not a model directory (name the model with --model DIR"), std::string::npos) << r.err;
}

TEST_F(CliValues, ABacktrackingTokenizerFailsOnceNotPerLine) {
  test::ScratchDir model;
  test::copy_model(MOTE_MODEL_DIR, model.path());
  auto tokenizer = nlohmann::json::parse(test::read_file(model / "tokenizer.json"));
  tokenizer["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(a|aa)+$"}}}, {"behavior", "Isolated"}, {"invert", false}};
  write_file(model / "tokenizer.json", tokenizer.dump());
  std::string lines;
  for (int i = 0; i < 4; ++i) lines += "{\"text\": \"" + std::string(60, 'a') + "b\"}\n";
  write_file(dir_ / "lines.jsonl", lines);
  const auto r = mote({"tokenize", "--tokenizer", model.path().string(), "--input", (dir_ / "lines.jsonl").string()});
  EXPECT_ERROR_MESSAGE(r, "a pre-tokenizer Split regex ran past its time or stack limit on a text of 61 bytes");
  EXPECT_EQ(r.out, "") << "a line after the first was tokenized";
}

TEST_F(CliValues, RankRefusesItsInputAsOutputAndSteeredFiles) {
  write_file(dir_ / "p.jsonl",
             "{\"id\": \"a\", \"class\": \"x\", \"prompt\": \"Hello\"}\n{\"id\": \"b\", \"class\": \"y\", \"prompt\": "
             "\"World\"}\n");
  auto r = mote({"profile", "--prompts", (dir_ / "p.jsonl").string(), "--max-new-tokens", "2", "--out",
                 (dir_ / "p.h5").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_ERROR_MESSAGE(
      mote({"rank", (dir_ / "p.h5").string(), "--target", "x", "--control", "y", "--out", (dir_ / "p.h5").string()}),
      "--out " + (dir_ / "p.h5").string() + ": is the file --file names; writing it would destroy it");
  write_file(dir_ / "m.ini", "[mote]\nlayer-index = moe\noff = 0:1\n");
  r = mote({"profile", "--prompts", (dir_ / "p.jsonl").string(), "--max-new-tokens", "2", "--mask",
            "m=" + (dir_ / "m.ini").string(), "--out", (dir_ / "s.h5").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_ERROR_MESSAGE(mote({"rank", (dir_ / "s.h5").string(), "--target", "x", "--control", "y"}),
                       "s.h5: its requests ran under mask sets (m), so its counts mix steered and unsteered routing");
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

TEST_F(CliValues, InspectAndDiffAnswerTheCommonQuestions) {
  write_file(dir_ / "p.jsonl",
             "{\"id\": \"a\", \"class\": \"x\", \"prompt\": \"Hello there\"}\n{\"id\": \"b\", \"class\": \"y\", "
             "\"prompt\": \"World\"}\n");
  write_file(dir_ / "m.ini", "[mote]\nlayer-index = moe\noff = 0:1\noff = 0:2\n");
  ASSERT_EQ(mote({"profile", "--prompts", (dir_ / "p.jsonl").string(), "--max-new-tokens", "3", "--out",
                  (dir_ / "a.h5").string()})
                .exit_code,
            0);
  ASSERT_EQ(mote({"profile", "--prompts", (dir_ / "p.jsonl").string(), "--max-new-tokens", "3", "--mask",
                  (dir_ / "m.ini").string(), "--out", (dir_ / "b.h5").string()})
                .exit_code,
            0);
  auto r = mote({"inspect", (dir_ / "b.h5").string(), "--top", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* needle :
       {"a mote profile file (format mote v1)", "5 MoE layers x 32 routed experts", "requests:  2 (0 failed)",
        "masks:     default", "top 2 experts of class 'x'", "top 2 experts of class 'y'"}) {
    EXPECT_NE(r.out.find(needle), std::string::npos) << needle << "\n" << r.out;
  }
  r = mote({"inspect", MOTE_MODEL_DIR, "-n", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("deepseek_v3: 6 layers (1 dense, 5 MoE)"), std::string::npos) << r.out;
  // Switching experts 1 and 2 of MoE layer 0 off moves their tokens: they top the change, at frequency 0 in B.
  r = mote({"diff", (dir_ / "a.h5").string(), (dir_ / "b.h5").string(), "--top", "40"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("class 'x': token positions"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("          0       1   "), std::string::npos) << r.out;
  EXPECT_ERROR_MESSAGE(mote({"diff", (dir_ / "a.h5").string()}), "give two profile files: mote diff A.h5 B.h5");
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

// Every case of each real tokenizer's public.jsonl through `mote tokenize`,
// as a user checks a tokenizer: all match the reference library except
// DeepSeek's 19 cases holding Unicode 16 characters, which ICU 72's tables
// (Unicode 15.0) cannot know.
TEST_F(CliValues, TokenizeMatchesTheReferenceLibraryOnEveryCase) {
  const std::vector<std::string> unicode16 = {"\U0001FAE9", "\U0001FAC6", "\U0001FA89"};
  for (const char* name : {"deepseek_v3", "qwen3", "gpt-oss", "mistral-7b-mixtral"}) {
    const std::filesystem::path dir = std::filesystem::path(MOTE_TEST_DATA_DIR) / "tokenizers" / name;
    const auto r = mote({"tokenize", "--tokenizer", dir.string(), "--input", (dir / "public.jsonl").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream in(dir / "public.jsonl");
    std::istringstream out(r.out);
    std::string want, got;
    int cases = 0, differ = 0;
    while (std::getline(in, want)) {
      ASSERT_TRUE(std::getline(out, got)) << name;
      const auto reference = nlohmann::json::parse(want);
      ++cases;
      if (nlohmann::json::parse(got)["ids"] == reference["ids"]) continue;
      ++differ;
      const std::string text = reference["text"].get<std::string>();
      EXPECT_TRUE(std::string(name) == "deepseek_v3" &&
                  std::any_of(unicode16.begin(), unicode16.end(),
                              [&](const std::string& c) { return text.find(c) != std::string::npos; }))
          << name << " case " << cases << " differs: " << nlohmann::json(text).dump();
    }
    EXPECT_EQ(cases, 1500) << name;
    EXPECT_EQ(differ, std::string(name) == "deepseek_v3" ? 19 : 0) << name;
  }
}

// Each chat reference through `mote tokenize`: rendered text and ids, or the
// template's own exception text.
TEST_F(CliValues, TokenizeRendersEveryChatReference) {
  const std::filesystem::path data = std::filesystem::path(MOTE_TEST_DATA_DIR) / "tokenizers";
  struct Set {
    const char* folder;
    const char* tokenizer;
    std::string template_file;
  };
  for (const Set& set : {Set{"deepseek_v3", "deepseek_v3", ""},
                         Set{"deepseek_r1", "deepseek_v3", (data / "deepseek_r1/chat_template.jinja").string()},
                         Set{"qwen3", "qwen3", ""}, Set{"gpt-oss", "gpt-oss", ""},
                         Set{"mistral-7b-mixtral", "mistral-7b-mixtral", ""}}) {
    const auto input = data / set.folder / "chat_public.jsonl";
    std::vector<std::string> args{"tokenize", "--tokenizer", (data / set.tokenizer).string(), "--input",
                                  input.string()};
    if (!set.template_file.empty()) args.insert(args.end(), {"--chat-template", set.template_file});
    const auto r = mote(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream in(input);
    std::istringstream out(r.out);
    std::string want, got;
    int cases = 0;
    while (std::getline(in, want)) {
      ASSERT_TRUE(std::getline(out, got)) << set.folder;
      const auto reference = nlohmann::json::parse(want), result = nlohmann::json::parse(got);
      ++cases;
      if (reference.contains("error")) {
        EXPECT_EQ(result.value("error", ""), reference["error"].get<std::string>())
            << set.folder << " " << reference["id"];
      } else {
        EXPECT_EQ(result.value("text", ""), reference["text"].get<std::string>())
            << set.folder << " " << reference["id"];
        EXPECT_EQ(result["ids"], reference["ids"]) << set.folder << " " << reference["id"];
      }
    }
    EXPECT_EQ(cases, 60) << set.folder;
  }
}

// Conversations in a job: the model's template by default, a line's own
// template file, template variables from the line, and a conversation the
// template refuses failing alone.
TEST_F(CliValues, ConversationsRenderWithTheirChatTemplate) {
  write_file(dir_ / "t.jinja",
             "{% if messages[0].content == 'no' %}{{ raise_exception('refused: ' ~ messages[0].content) }}{% endif %}"
             "{{ bos_token }}<｜User｜>{{ messages[0].content }}{% if shout %}!{% endif %}<｜Assistant｜>");
  write_file(dir_ / "p.jsonl",
             "{\"id\": \"own\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"shout\": true, "
             "\"chat_template\": \"t.jinja\"}\n"
             "{\"id\": \"refused\", \"messages\": [{\"role\": \"user\", \"content\": \"no\"}], \"chat_template\": "
             "\"t.jinja\"}\n"
             "{\"id\": \"model\", \"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", "
             "\"content\": \"Hi\"}]}\n");
  const auto out = dir_ / "o.h5";
  const auto r = mote({"generate", "--prompts", (dir_ / "p.jsonl").string(), "--max-new-tokens", "1", "--out",
                       out.string(), "--log-level", "warn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(
      r.err.find("p.jsonl:2 (id 'refused'): request skipped: the chat template refuses the conversation: refused: no"),
      std::string::npos)
      << r.err;
  h5_silence_errors();
  H5Handle f(H5Fopen(out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  for (const auto& [request, expected] :
       std::vector<std::pair<std::string, std::string>>{{"0", "<｜begin▁of▁sentence｜><｜User｜>Hi!<｜Assistant｜>"},
                                                        // The bundled model's own template writes no system turn.
                                                        {"2", "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>"}}) {
    H5Handle ds(H5Dopen2(f.id(), ("/requests/" + request + "/prompt_text").c_str(), H5P_DEFAULT), H5Dclose);
    H5Handle type(H5Dget_type(ds.id()), H5Tclose);
    ASSERT_GT(H5Tis_variable_str(type.id()), 0);
    char* p = nullptr;
    ASSERT_GE(H5Dread(ds.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), 0);
    EXPECT_EQ(std::string(p), expected) << request;
    H5free_memory(p);
  }
  // --chat-template: a template that does not parse fails the job before any weights are read.
  write_file(dir_ / "bad.jinja", "{% for m in messages %}{{ m.content }}");
  EXPECT_ERROR_MESSAGE(
      mote({"generate", "--prompts", (dir_ / "p.jsonl").string(), "--chat-template", (dir_ / "bad.jinja").string()}),
      (dir_ / "bad.jinja").string() + ":1: '{% for %}' is not closed: '{% endfor %}' missing");
}

TEST_F(CliValues, TokenizeLinesAndTheirErrors) {
  const std::filesystem::path tokenizer = std::filesystem::path(MOTE_TEST_DATA_DIR) / "tokenizers/deepseek_v3";
  write_file(dir_ / "in.jsonl",
             "{\"text\": \"Hello\"}\n"
             "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n"
             "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"add_generation_prompt\": false}\n"
             "{\"neither\": 1}\n");
  auto r = mote({"tokenize", "--tokenizer", tokenizer.string(), "--input", (dir_ / "in.jsonl").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\"ids\":[19923]}\n"
            "{\"ids\":[0,128803,23166,128804],\"text\":\"<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>\"}\n"
            "{\"ids\":[0,128803,23166],\"text\":\"<｜begin▁of▁sentence｜><｜User｜>Hi\"}\n"
            "{\"error\":\"" +
                (dir_ / "in.jsonl").string() + ":4: expected {\\\"text\\\": ...} or {\\\"messages\\\": [...]}\"}\n");
  r = mote(
      {"tokenize", "--tokenizer", tokenizer.string(), "--input", (dir_ / "in.jsonl").string(), "--add-special-tokens"});
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')), "{\"ids\":[0,19923]}");
  // A broken template fails at once, naming its line.
  write_file(dir_ / "bad.jinja", "{% for m in messages %}\n{{ m.content | frobnicate }}{% endfor %}");
  EXPECT_ERROR_MESSAGE(mote({"tokenize", "--tokenizer", tokenizer.string(), "--input", (dir_ / "in.jsonl").string(),
                             "--chat-template", (dir_ / "bad.jinja").string()}),
                       (dir_ / "bad.jinja").string() + ":2: no filter named 'frobnicate'");
}

}  // namespace
}  // namespace mote
