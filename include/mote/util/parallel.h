// The compute threads of a process: the calling thread plus a pool of
// workers, used by the kernels for their parallel loops.
//
// Tasks are claimed one at a time from a shared counter, and the caller
// works too, so a loop never waits for a worker to start: a worker that is
// slow to wake or descheduled by another process on its core simply takes
// fewer tasks, and the caller waits only for tasks already claimed. Idle
// workers spin briefly for the next loop, then sleep. (OpenMP's fork-join
// with a static split waits at every region for every thread; with another
// busy process on the node that turned 2 threads into a fraction of 1.)
//
// Which thread runs a task never changes its result: every kernel computes
// each output element in one fixed order.
#pragma once

#include <functional>

namespace mote {

// Runs fn(task, thread) for every task in [0, tasks), thread < parallel_threads()
// naming the thread that runs it (for per-thread scratch). Runs on the
// calling thread alone when `parallel` is false (too little work to share),
// when there is one thread or one task, or when called from inside a task or
// while another thread's loop is running.
void parallel_for(int tasks, const std::function<void(int task, int thread)>& fn, bool parallel = true);

// Threads a loop may use, the caller included. The default is
// OMP_NUM_THREADS if set, else the cores this process may run on.
int parallel_threads();
void set_parallel_threads(int threads);

}  // namespace mote
