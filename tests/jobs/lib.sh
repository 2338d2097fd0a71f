# The start of every job test (tests/jobs/NAME.sh ROOT MOTE_BIN), sourced
# as its first line: sets root, MOTE_BIN (exported, as launch/mote-run reads
# it) and its short name mote, run (launch/mote-run), and a scratch
# directory $work, made the current one and removed at exit after the
# script's own on_exit, if it defines one (to kill what it started or
# unmount what it mounted). Then the shared checks of same_results.sh.
set -uo pipefail
root=$1
export MOTE_BIN=$2
mote=$MOTE_BIN
run=$root/launch/mote-run
work=$(mktemp -d)
trap 'if declare -F on_exit > /dev/null; then on_exit || true; fi; rm -rf "$work"' EXIT
cd "$work"
source "$root/tests/jobs/same_results.sh"
