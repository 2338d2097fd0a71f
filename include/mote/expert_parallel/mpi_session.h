// MPI for the lifetime of the process. Every mote process is an MPI process;
// started without mpirun it is a job of one rank and takes the same code
// path, with collectives over a single rank.
#pragma once

namespace mote {

class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Ranks of the job on this host (this one included), from MPI's
  // shared-memory split: a rank's fair share of the host's cores is
  // cores / local_ranks().
  int local_ranks() const { return local_ranks_; }
  // Ends every rank of the job with `code`; mpirun reports which rank asked.
  [[noreturn]] void abort(int code);

  // Set once all ranks have agreed on the job (options parsed, model
  // loaded): from then on an error on one rank must end the others too.
  bool job_started = false;

 private:
  int rank_ = 0;
  int size_ = 1;
  int local_ranks_ = 1;
};

}  // namespace mote
