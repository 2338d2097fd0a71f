#!/usr/bin/env bash
# The golden prompts over three network-namespace hosts, TCP only, one rank
# per host, with 1, 2 and 3 coordinators: bit-identical to the single-process run. Skipped (exit 77) where
# network namespaces cannot be created (not root, no CAP_NET_ADMIN).
source "$(dirname "$0")/lib.sh"
set -e
on_exit() { "$root/cluster/netns-hosts" down > /dev/null 2>&1; }
# Names of our own, so that parallel runs and real hosts are never touched.
export MOTE_NETNS_PREFIX="mt$$h"
export MOTE_NETNS_SUBNET="10.214.$(( $$ % 200 + 1 ))"
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: network namespaces need root"; exit 77; fi
# Whether this machine can make the hosts at all (a chroot or container may
# not) is a fact about the machine, not about mote: skip, saying why.
if ! "$root/cluster/netns-hosts" up 3 > "$work/netns.log" 2>&1; then
  echo "SKIP: cannot create network-namespace hosts here: $(tail -n 1 "$work/netns.log")"; exit 77
fi

/usr/bin/python3 "$root/tests/jobs/golden_prompts.py" "$root/models/tiny-deepseek-v3-mote" "$work/golden.jsonl"
common=(--prompts "$work/golden.jsonl" --max-new-tokens 32 --ignore-eos --save-logits --trace --log-level warn)
"$MOTE_BIN" generate "${common[@]}" --out "$work/single.h5" > /dev/null
for placement in contiguous round-robin; do
  "$root/cluster/run-local-cluster" 3 generate "${common[@]}" --placement "$placement" --out "$work/cluster.h5" > /dev/null
  for object in /requests /counts /gate_sum; do
    h5diff -q "$work/single.h5" "$work/cluster.h5" "$object" "$object" || { echo "FAIL: $object differs ($placement)"; exit 1; }
  done
  echo "3 hosts over TCP, $placement placement: bit-identical to one process"
done
for k in 2 3; do
  "$root/cluster/run-local-cluster" 3 generate "${common[@]}" --coordinators "$k" --out "$work/cluster.h5" > /dev/null
  for object in /requests /counts /gate_sum; do
    h5diff -q "$work/single.h5" "$work/cluster.h5" "$object" "$object" || { echo "FAIL: $object differs ($k coordinators)"; exit 1; }
  done
  echo "3 hosts over TCP, $k coordinators: bit-identical to one process"
done

# A node that cannot be reached at start is a clear error within seconds,
# not a hang: one whose remote shell fails (as ssh does for a host that is
# down) and one whose network link is down.
unreachable() {  # unreachable NAME HOSTFILE
  local start status
  start=$(date +%s)
  timeout 120 "$root/launch/mote-run" -n 3 --hostfile "$2" --oversubscribe \
    --mpirun-arg --mca --mpirun-arg plm_rsh_agent --mpirun-arg "$root/cluster/netns-rsh" \
    --mpirun-arg --mca --mpirun-arg btl --mpirun-arg tcp,self \
    --mpirun-arg --mca --mpirun-arg oob_tcp_if_include --mpirun-arg "$MOTE_NETNS_SUBNET.0/24" \
    --mpirun-arg --map-by --mpirun-arg node \
    generate "${common[@]}" --out "$work/unreachable.h5" > /dev/null 2> "$work/unreachable.err" && status=0 || status=$?
  [ "$status" -ne 0 ] || { echo "FAIL: $1: the job succeeded"; exit 1; }
  [ "$status" -ne 124 ] || { echo "FAIL: $1: the job hung"; exit 1; }
  grep -q "unable to reliably start one or more daemons" "$work/unreachable.err" || { echo "FAIL: $1: no clear error"; cat "$work/unreachable.err"; exit 1; }
  [ ! -e "$work/unreachable.h5" ] || { echo "FAIL: $1: an output appeared"; exit 1; }
  echo "$1: mpirun ended with status $status after $(( $(date +%s) - start )) s, naming the failed daemon start"
}
# Not through a pipe into head: under pipefail the listing's SIGPIPE, when
# head exits before the last line is written, would end this script.
"$root/cluster/netns-hosts" hostfile > "$work/all-hosts"
head -n 2 "$work/all-hosts" > "$work/hosts"
echo "$MOTE_NETNS_SUBNET.9 slots=1" >> "$work/hosts"
unreachable "host down (remote shell fails)" "$work/hosts"
ip netns exec "${MOTE_NETNS_PREFIX}3" ip link set "${MOTE_NETNS_PREFIX}3p" down
head -n 3 "$work/all-hosts" > "$work/hosts"
unreachable "network link of one host down" "$work/hosts"
