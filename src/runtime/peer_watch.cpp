#include "peer_watch.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

namespace mote {

namespace {

// The process's state letter and start time from /proc/PID/stat; an empty
// start time when the process is gone.
std::pair<char, std::string> process_state(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return {'?', ""};
  // The command name (field 2) may hold spaces and parentheses: the fields
  // after it start after its last ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return {'?', ""};
  std::istringstream fields(line.substr(close + 1));
  std::string field;
  char state = '?';
  std::string start;
  for (int i = 3; fields >> field; ++i) {
    if (i == 3) state = field.empty() ? '?' : field[0];
    if (i == 22) {
      start = field;
      break;
    }
  }
  return {state, start};
}

bool dead(char state) { return state == 'Z' || state == 'X' || state == 'x'; }

}  // namespace

PeerWatch::PeerWatch(std::vector<MpiSession::Peer> peers, std::function<void(const std::string&)> on_death,
                     std::chrono::milliseconds interval)
    : on_death_(std::move(on_death)), interval_(interval) {
  for (const auto& p : peers) peers_.push_back({p, process_state(p.pid).second});
  if (!peers_.empty()) thread_ = std::thread([this] { watch(); });
}

PeerWatch::~PeerWatch() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PeerWatch::watch() {
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, interval_, [&] { return stopping_; })) {
    for (const Watched& w : peers_) {
      const auto [state, start] = process_state(w.peer.pid);
      if (start.empty() || start != w.start_time || dead(state)) {
        on_death_(fmt::format("rank {} (process {}) died", w.peer.rank, w.peer.pid));
        return;
      }
    }
  }
}

}  // namespace mote
