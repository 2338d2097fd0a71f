// SIGTERM, SIGINT, SIGUSR2 and SIGPIPE (the reader of the text output went
// away: `| head`, a `tee` that died) ask a job to stop at the next step boundary,
// save what it finished as a checkpoint and exit with 128 + the signal
// number; they do not kill it. A second SIGINT (Ctrl-C twice) kills at once.
// Batch systems send SIGTERM some time before SIGKILL; that grace time is
// when the checkpoint is written. mpirun turns a SIGTERM it receives into
// SIGTERM then SIGKILL one second later for every rank, but forwards SIGUSR2
// as it is, so launch/mote-run hands the ranks SIGUSR2 when it is stopped.
#pragma once

#include <string>

namespace mote {

// Installs the handlers, and ignores SIGXFSZ so that a file-size limit
// makes a write fail with an error (like a full disk) instead of killing.
void install_stop_handlers();

// The first stop signal received, or 0.
int stop_signal();

// Asks for a stop as if `signal` had been received (a failed write to
// standard output stops the job as SIGPIPE does).
void request_stop(int signal);

// A stop signal seen before the job runs (loading the model, reading and
// tokenizing prompts, planning): nothing has been computed that a
// checkpoint could keep, so the command ends at once with 128 + the signal
// and writes nothing.
struct Stopped {
  int signal;
  std::string phase;  // "loading the model", ...
};

// Throws Stopped when a stop signal has arrived. Long loops before the job
// runs call it once per item, so that `timeout` and a batch system's
// SIGTERM end the command in every phase. With MOTE_PAUSE_AT=PHASE in the
// environment the first call of that phase waits for a signal and returns
// (for tests of stop handling: the phase's later calls must see it).
void stop_point(const char* phase);

// "SIGTERM", "SIGINT", ... for messages.
const char* signal_name(int signal);

}  // namespace mote
