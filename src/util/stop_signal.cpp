#include "mote/util/stop_signal.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mote {
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int signal) {
  if (g_stop_signal != 0 && signal == SIGINT) {
    // Asked twice from a terminal: the user wants out now.
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
    return;
  }
  if (g_stop_signal == 0) g_stop_signal = signal;
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // MPI and file calls carry on; the job polls the flag
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGUSR2, &action, nullptr);
  sigaction(SIGPIPE, &action, nullptr);
  std::signal(SIGXFSZ, SIG_IGN);
}

int stop_signal() { return g_stop_signal; }

void request_stop(int signal) {
  if (g_stop_signal == 0) g_stop_signal = signal;
}

void stop_point(const char* phase) {
  static const char* const pause_at = std::getenv("MOTE_PAUSE_AT");
  static bool paused = false;
  if (pause_at != nullptr && !paused && std::strcmp(pause_at, phase) == 0) {
    paused = true;
    std::fprintf(stderr, "mote: paused while %s (MOTE_PAUSE_AT); waiting for a signal\n", phase);
    while (g_stop_signal == 0) ::usleep(10000);
    return;
  }
  if (g_stop_signal != 0) throw Stopped{g_stop_signal, phase};
}

const char* signal_name(int signal) {
  switch (signal) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGUSR2:
      return "SIGUSR2";
    case SIGPIPE:
      return "SIGPIPE";
    default:
      return "a signal";
  }
}

}  // namespace mote
