# Sourced by the job tests: comparing results, waiting for output, expected errors, finding a rank.
# same A B: requests (tokens, logits, routing, texts) and counters are bit-identical.
same() {
  for object in /requests /counts /gate_sum /classes; do
    if ! h5diff -q "$1" "$2" "$object" "$object"; then
      echo "FAIL: $2 differs from $1 in $object"; h5diff -r "$1" "$2" "$object" "$object" | head -20; exit 1
    fi
  done
}

wait_for_output() {  # wait_for_output FILE N: until N requests were printed
  for _ in $(seq 1 600); do
    [ "$(grep -c '^### ' "$1" 2>/dev/null)" -ge "$2" ] && return 0
    sleep 0.05
  done
  echo "FAIL: the job printed fewer than $2 requests"; exit 1
}

expect_error() {  # expect_error MESSAGE ARGS...
  local message=$1; shift
  if "$@" > /dev/null 2> err.txt; then echo "FAIL: accepted: $*"; exit 1; fi
  grep -q -- "$message" err.txt || { echo "FAIL: expected '$message' from: $*"; cat err.txt; exit 1; }
}

rank_pids() {  # rank_pids RANK PATTERN: pids of the processes matching PATTERN that run MPI rank RANK
  local pid
  for pid in $(pgrep -f "$2"); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then echo "$pid"; fi
  done
}
