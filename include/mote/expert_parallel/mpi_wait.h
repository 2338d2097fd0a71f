// Waiting for another rank without holding a core. A rank that waits for
// another's compute (an expert rank during a coordinator's attention, a
// coordinator during another's larger step) would otherwise spin in MPI's
// progress loop; where cores share execution units (SMT siblings, or
// virtual CPUs placed on them) that spinning slows the very rank it waits
// for. Measured on the 2-vCPU development machine: a profile job over 2
// ranks with one coordinator ran slower than 1 rank alone until waits slept.
#pragma once

#include <mpi.h>

namespace mote {

// Completes `request`: tests it for 100 us, then sleeps between tests
// (20 us, doubling up to 200 us). `what` names the operation in errors.
void wait_for(MPI_Request& request, const char* what);

}  // namespace mote
