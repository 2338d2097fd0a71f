#include "mote/model/request.h"

namespace mote {

const char* stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::Eos:
      return "eos";
    case StopReason::MaxTokens:
      return "max_new_tokens";
    case StopReason::ContextFull:
      return "context_full";
    case StopReason::Error:
      return "error";
    case StopReason::Cancelled:
      return "cancelled";
  }
  return "?";
}

}  // namespace mote
