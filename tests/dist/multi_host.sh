#!/usr/bin/env bash
# The golden prompts over three network-namespace hosts, TCP only, one rank
# per host: bit-identical to the single-process run. Skipped (exit 77) where
# network namespaces cannot be created (not root, no CAP_NET_ADMIN).
set -euo pipefail
root=$1
export MOTE_BIN=$2
# Names of our own, so that parallel runs and real hosts are never touched.
export MOTE_NETNS_PREFIX="mt$$h"
export MOTE_NETNS_SUBNET="10.214.$(( $$ % 200 + 1 ))"
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: network namespaces need root"; exit 77; fi
work=$(mktemp -d)
trap '"$root/cluster/netns-hosts" down > /dev/null 2>&1; rm -rf "$work"' EXIT
# Whether this machine can make the hosts at all (a chroot or container may
# not) is a fact about the machine, not about mote: skip, saying why.
if ! "$root/cluster/netns-hosts" up 3 > "$work/netns.log" 2>&1; then
  echo "SKIP: cannot create network-namespace hosts here: $(tail -n 1 "$work/netns.log")"; exit 77
fi

/usr/bin/python3 "$root/tests/dist/golden_prompts.py" "$root/models/tiny-deepseek-v3-mote" "$work/golden.jsonl"
common=(--prompts "$work/golden.jsonl" --max-new-tokens 32 --ignore-eos --save-logits --trace --log-level warn)
"$MOTE_BIN" generate "${common[@]}" --out "$work/single.h5" > /dev/null
for placement in contiguous round-robin; do
  "$root/cluster/run-local-cluster" 3 generate "${common[@]}" --placement "$placement" --out "$work/cluster.h5" > /dev/null
  for object in /requests /counts /gate_sum; do
    h5diff -q "$work/single.h5" "$work/cluster.h5" "$object" "$object" || { echo "FAIL: $object differs ($placement)"; exit 1; }
  done
  echo "3 hosts over TCP, $placement placement: bit-identical to one process"
done
