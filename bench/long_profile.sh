#!/usr/bin/env bash
# A long fTRI job: profiles N prompts (default 10,000) on the bundled model
# with checkpoints, sampling the process's resident memory from /proc as
# requests finish, and prints one JSON object: RSS at 1k requests and near
# the end of the run (before the final file is assembled), the peak, the
# largest checkpoint part, and the time the job took.
#
#   bench/long_profile.sh [N] [CHECKPOINT_EVERY]     (MOTE_BIN=build/mote)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mote=${MOTE_BIN:-$root/build/mote}
n=${1:-10000}
every=${2:-500}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Distinct ids, texts cycled from the profiling prompt set.
awk -v n="$n" '{ line[NR] = $0 } END { for (i = 0; i < n; ++i) { l = line[i % NR + 1]; sub(/"id": *"[^"]*"/, "\"id\": \"q" i "\"", l); print l } }' \
  "$root/configs/prompts/refusal-profile.jsonl" > "$work/p.jsonl"
start=$(date +%s.%N)
"$mote" profile --prompts "$work/p.jsonl" --max-new-tokens 8 --batch-size 16 --checkpoint-every "$every" --out "$work/out.h5" \
  --log-level warn > "$work/stdout" &
pid=$!
rss_1k="" rss_last=0 done_last=0 max_part=0 rss_peak=0
while kill -0 "$pid" 2> /dev/null; do
  rss=$(awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$pid/status" 2> /dev/null || echo 0)
  done_now=$(grep -c '^### ' "$work/stdout" || true)
  if [ -z "$rss_1k" ] && [ "$done_now" -ge 1000 ]; then rss_1k=$rss; done_1k=$done_now; fi
  # The last sample while requests still run; assembling the final file comes after.
  if [ "${rss:-0}" -gt 0 ] && [ "$done_now" -lt "$n" ]; then rss_last=$rss; done_last=$done_now; fi
  [ "${rss:-0}" -gt "$rss_peak" ] && rss_peak=$rss
  for part in "$work"/out.h5.checkpoint/part-*.h5; do
    [ -e "$part" ] || continue
    size=$(stat -c %s "$part"); [ "$size" -gt "$max_part" ] && max_part=$size
  done
  sleep 0.5
done
wait "$pid"
end=$(date +%s.%N)
printf '{"bench": "long_profile", "requests": %d, "checkpoint_every": %d, "rss_bytes_at": {"%d": %s, "%d": %d}, "peak_rss_bytes": %d, "largest_part_bytes": %d, "output_bytes": %d, "seconds": %.1f}\n' \
  "$n" "$every" "${done_1k:-0}" "${rss_1k:-0}" "$done_last" "$rss_last" "$rss_peak" "$max_part" "$(stat -c %s "$work/out.h5")" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')"
