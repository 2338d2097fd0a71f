// SIGTERM, SIGINT, SIGUSR2 and SIGPIPE (the reader of the text output went
// away: `| head`, a `tee` that died) ask a job to stop at the next step boundary,
// save what it finished as a checkpoint and exit with 128 + the signal
// number; they do not kill it. A second SIGINT (Ctrl-C twice) kills at once.
// Batch systems send SIGTERM some time before SIGKILL; that grace time is
// when the checkpoint is written. mpirun turns a SIGTERM it receives into
// SIGTERM then SIGKILL one second later for every rank, but forwards SIGUSR2
// as it is, so launch/mote-run hands the ranks SIGUSR2 when it is stopped.
#pragma once

namespace mote {

// Installs the handlers, and ignores SIGXFSZ so that a file-size limit
// makes a write fail with an error (like a full disk) instead of killing.
void install_stop_handlers();

// The first stop signal received, or 0.
int stop_signal();

// Asks for a stop as if `signal` had been received (a failed write to
// standard output stops the job as SIGPIPE does).
void request_stop(int signal);

// "SIGTERM", "SIGINT", ... for messages.
const char* signal_name(int signal);

}  // namespace mote
