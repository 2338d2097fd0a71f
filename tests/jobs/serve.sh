#!/usr/bin/env bash
# `mote serve` end to end with curl and Python's urllib: chat and
# completions equal to `mote generate` for the same prompts and masks, one
# by one and all at once, at 1 rank and at 3 ranks with 2 coordinators;
# streaming equal to unstreamed; echo + logprobs equal to --score-tokens;
# every error status; SIGTERM mid-stream; a client leaving mid-stream; a
# rank dying mid-request.
source "$(dirname "$0")/lib.sh"
check=$root/tests/jobs/serve_check.py
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

server_pid=""
on_exit() { if [ -n "$server_pid" ]; then kill -9 "$server_pid" 2> /dev/null; fi; }

# start_server LOG COMMAND...: starts a server on a free port; sets $port and $server_pid.
start_server() {
  local log=$1
  shift
  "$@" --port 0 > /dev/null 2> "$log" &
  server_pid=$!
  port=""
  for _ in $(seq 1 600); do
    port=$(sed -n 's|.*ready: http://127.0.0.1:\([0-9]*\)/v1.*|\1|p' "$log" | head -1)
    [ -n "$port" ] && return 0
    kill -0 $server_pid 2> /dev/null || break
    sleep 0.05
  done
  echo "FAIL: the server did not start"; cat "$log"; exit 1
}

# stop_server [SIGNAL]: signals the server and checks it exits 0 within 30 s.
stop_server() {
  kill "-${1:-TERM}" $server_pid
  local waited=0
  while kill -0 $server_pid 2> /dev/null && [ $waited -lt 600 ]; do sleep 0.05; waited=$((waited + 1)); done
  if kill -0 $server_pid 2> /dev/null; then fail "the server still runs 30 s after SIG${1:-TERM}"; kill -9 $server_pid; fi
  wait $server_pid
  local status=$?
  [ $status -eq 0 ] || fail "the server exited with $status after SIG${1:-TERM}"
  server_pid=""
}

# first_bytes FILE: waits until a streamed response has begun.
first_bytes() {
  for _ in $(seq 1 400); do [ -s "$1" ] && return 0; sleep 0.02; done
  fail "no stream began in $1"
}

# status BODY PATH EXPECTED [CURL ARGS...]: the HTTP status and an OpenAI error object.
status() {
  local body=$1 path=$2 want=$3
  shift 3
  local got
  got=$(curl -s -o response.json -w '%{http_code}' "$@" "http://127.0.0.1:$port$path" --data-binary "$body")  # @FILE: the file
  if [ "$got" != "$want" ]; then fail "$path $(echo "$body" | head -c 80): status $got, expected $want: $(head -c 300 response.json)"; return; fi
  if [ "$want" -ge 400 ] && [ "$path" != /health ] && ! /usr/bin/python3 -c 'import json,sys; e=json.load(open("response.json"))["error"]; assert e["message"] and e["type"]'; then
    fail "$path: status $got without an error object: $(head -c 300 response.json)"
  fi
}

# refuses MESSAGE ARGS...: serve with ARGS exits non-zero at once, saying MESSAGE.
refuses() {
  local want=$1
  shift
  if timeout 60 "$mote" serve "$@" > /dev/null 2> refused.txt; then fail "serve $* started"; return; fi
  grep -q -- "$want" refused.txt || fail "serve $*: no message naming $want: $(cat refused.txt)"
}

# Prompts: conversations and raw text, unsteered and under two mask sets.
printf '[mote]\nlayer-index = moe\noff = 0:24\noff = 2:1\n' > off.ini
printf '[mote]\nlayer-index = moe\non = 0:3\non = 4:30\n' > on.ini
questions=("What happened last year in Belvask?" "Tell me a saying." "Erzähl mir einen Spruch.")
: > prompts.jsonl
for set in none off on; do
  for i in 0 1 2; do
    printf '{"id": "%s-chat-%d", "mask": "%s", "messages": [{"role": "user", "content": "%s"}]}\n' "$set" $i "$set" "${questions[$i]}" >> prompts.jsonl
  done
  printf '{"id": "%s-text", "mask": "%s", "prompt": "The secret of a happy life is"}\n' "$set" "$set" >> prompts.jsonl
done
masks=(--mask off=off.ini --mask on=on.ini)
"$mote" generate --prompts prompts.jsonl "${masks[@]}" --max-new-tokens 24 --log-level warn --out generate.h5 > /dev/null ||
  { echo "FAIL: generate"; exit 1; }

# 1 rank: equal to the job, alone and all at once; streaming; errors.
start_server serve1.log "$mote" serve "${masks[@]}" --max-queue 64 --record served1.h5
/usr/bin/python3 "$check" same $port prompts.jsonl generate.h5 24 || fail "requests one by one (1 rank)"
/usr/bin/python3 "$check" same $port prompts.jsonl generate.h5 24 --concurrent || fail "requests at once (1 rank)"
/usr/bin/python3 "$check" same $port prompts.jsonl generate.h5 24 --concurrent --inline=off=off.ini --inline=on=on.ini ||
  fail "masks written in the requests (1 rank)"
/usr/bin/python3 "$check" stream $port prompts.jsonl 24 || fail "streaming"

status '' /health 200 -X GET
status '' /v1/models 200 -X GET
status '{"prompt": "Hello"}' /tokenize 200
status '{"tokens": [1, 2, 3]}' /detokenize 200
status '{"tokens": [99999999]}' /detokenize 400
status '{' /v1/chat/completions 400
status '[]' /v1/chat/completions 400
status '{"messages": []}' /v1/chat/completions 400
status '{"messages": [{"role": "user", "content": "x"}], "max_tokens": 5000}' /v1/chat/completions 400
status '{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}' /v1/chat/completions 400
status '{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}' /v1/chat/completions 400
status '{"messages": [{"role": "user", "content": "x"}], "mask": "nope"}' /v1/chat/completions 400
status '{"messages": [{"role": "user", "content": "x"}], "mask_ini": "[mote]\noff = 0:1"}' /v1/chat/completions 400
status '{"messages": [{"role": "user", "content": "x"}], "mask_ini": "[mote]\nlayer-index = moe\noff = 9:1"}' /v1/chat/completions 400
grep -q 'MoE layer 9 does not exist' response.json || fail "a bad mask_ini without the parser's message: $(cat response.json)"
status '{"messages": [{"role": "user", "content": "x"}], "mask_ini": "[mote]\ninclude = /etc/passwd"}' /v1/chat/completions 400
grep -q 'cannot include files' response.json || fail "mask_ini may include a file: $(cat response.json)"
status '{"messages": [{"role": "user", "content": "x"}], "mask": "off", "mask_ini": "[mote]"}' /v1/chat/completions 400
status '{"messages": [{"role": "user", "content": "x"}], "bogus": 1}' /v1/chat/completions 400
status '{"messages": [{"role": "user", "content": "x"}], "model": "gpt-4"}' /v1/chat/completions 404
status '{"prompt": "x", "echo": true, "stream": true}' /v1/completions 400
status '{"prompt": [5, 99999999]}' /v1/completions 400
status "{\"prompt\": \"$(printf '\xff\xfe')\"}" /v1/completions 400
head -c 9000000 /dev/zero | tr '\0' 'a' > big.json
status @big.json /v1/completions 413
status '{}' /no/such/route 404
status '' /metrics 200 -X GET
grep -q 'mote_expert_tokens_total{mask="off"' response.json || fail "/metrics has no expert tokens of mask set off"
grep -q 'mote_http_responses_total{status="400"}' response.json || fail "/metrics does not count the 400s"
for metric in mote_prompt_tokens_total mote_generation_tokens_total mote_queue_depth mote_running_requests \
  mote_time_to_first_token_seconds_count mote_request_seconds_count mote_step_seconds_count; do
  grep -q "^$metric [0-9]" response.json || fail "/metrics has no $metric"
done
[ "$(sed -n 's/^mote_step_seconds_count //p' response.json)" -gt 0 ] || fail "/metrics counts no steps"

# A taken port and an address not of this host fail before the model loads.
refuses "cannot listen on 127.0.0.1:$port" --port "$port"
refuses "cannot listen on 10.255.255.1" --host 10.255.255.1 --port "$port"
stop_server TERM
[ -e served1.h5.checkpoint ] && fail "the record's checkpoint is left after a clean shutdown"
/usr/bin/python3 "$check" record served1.h5 generate.h5 24 || fail "the record (1 rank)"

# Options that cannot make a server fail at once, naming the option.
refuses "--port 70000" --port 70000
refuses "--max-body" --max-body 10
refuses "--max-queue" --max-queue -1
refuses "--shutdown-timeout" --shutdown-timeout -1
refuses "--temperature" --temperature -1

# Errors of their own servers: an API key; a queue of 0.
start_server serve_key.log "$mote" serve --api-key s3cret
status '{"prompt": "x", "max_tokens": 1}' /v1/completions 401
status '{"prompt": "x", "max_tokens": 1}' /v1/completions 401 -H 'Authorization: Bearer wrong'
status '{"prompt": "x", "max_tokens": 1}' /v1/completions 200 -H 'Authorization: Bearer s3cret'
status '' /health 200 -X GET
stop_server INT
start_server serve_queue.log "$mote" serve --max-queue 0
status '{"prompt": "x", "max_tokens": 1}' /v1/completions 429
stop_server TERM
# Idle clients cannot take more than --max-connections; they time out.
start_server serve_connections.log "$mote" serve --max-connections 2
/usr/bin/python3 "$check" connections $port $server_pid 2 || fail "the connection limit"
stop_server TERM

# Loading: /health and requests say 503 until the model is ready.
MOTE_PAUSE_AT="loading the model" "$mote" serve --port 0 > /dev/null 2> loading.log &
server_pid=$!
for _ in $(seq 1 600); do grep -q "paused while loading the model" loading.log && break; sleep 0.05; done
port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\) .*|\1|p' loading.log | head -1)
status '' /health 503 -X GET
status '{"prompt": "x"}' /v1/completions 503
kill -TERM $server_pid
wait $server_pid
server_pid=""

# SIGTERM mid-stream: the stream runs to its end, the server exits 0.
start_server serve_term.log "$mote" serve --ignore-eos
# A client that leaves cancels its request and frees its slot, streamed or not.
generated() { curl -s "http://127.0.0.1:$port/metrics" | sed -n 's/^mote_generation_tokens_total //p'; }
# left_after BEFORE WHAT: no request runs within 5 s, and fewer than 1000 tokens were generated since BEFORE.
left_after() {
  local running=""
  for _ in $(seq 1 100); do
    running=$(curl -s "http://127.0.0.1:$port/metrics" | sed -n 's/^mote_running_requests //p')
    [ "$running" = "0" ] && break
    sleep 0.05
  done
  local after
  after=$(generated)
  [ "$running" = "0" ] || fail "$2: the request still runs after its client left"
  [ $((after - $1)) -lt 1000 ] || fail "$2: the request ran all its 1000 tokens after its client left"
  echo "$2: the request stopped after $((after - $1)) of 1000 tokens"
}
before=$(generated)
curl -sN "http://127.0.0.1:$port/v1/completions" \
  -d '{"prompt": "A", "max_tokens": 1000, "stream": true}' > left.out &
client=$!
first_bytes left.out
kill $client
wait $client 2> /dev/null
left_after "$before" "a client that left a stream at its first tokens"
before=$(generated)
curl -s --max-time 0.5 "http://127.0.0.1:$port/v1/completions" -d '{"prompt": "A", "max_tokens": 1000}' > /dev/null
left_after "$before" "a client that gave up waiting 0.5 s for an unstreamed answer"
curl -sN "http://127.0.0.1:$port/v1/completions" -d '{"prompt": "A", "max_tokens": 900, "stream": true}' > term.out &
client=$!
first_bytes term.out
stop_server TERM
wait $client
grep -q '"finish_reason":"length"' term.out && tail -1 term.out | grep -q '^$' && grep -q 'data: \[DONE\]' term.out ||
  fail "a stream did not run to its end after SIGTERM: $(tail -c 300 term.out)"
# With no time to finish, the stream ends with an error object and [DONE].
start_server serve_term0.log "$mote" serve --ignore-eos --shutdown-timeout 0
curl -sN "http://127.0.0.1:$port/v1/completions" -d '{"prompt": "A", "max_tokens": 1000, "stream": true}' > term0.out &
client=$!
first_bytes term0.out
stop_server TERM
wait $client
grep -q '"error"' term0.out && grep -q 'data: \[DONE\]' term0.out ||
  fail "a stream cancelled by the shutdown deadline did not say so: $(tail -c 300 term0.out)"

# echo + logprobs against --score-tokens on the same ids.
"$mote" generate --prompts prompts.jsonl --max-new-tokens 0 --score-tokens 'I,S,#7,#300' --log-level warn \
  "${masks[@]}" --out scored.h5 > /dev/null || fail "generate --score-tokens"
start_server serve_echo.log "$mote" serve "${masks[@]}"
/usr/bin/python3 "$check" echo $port scored.h5 || fail "echo + logprobs"
stop_server TERM

# 3 ranks, round-robin experts, 2 coordinators: the same as the job at 1 rank.
start_server serve3.log "$run" -n 3 --oversubscribe serve "${masks[@]}" --placement round-robin --coordinators 2 \
  --record served3.h5
/usr/bin/python3 "$check" same $port prompts.jsonl generate.h5 24 --concurrent || fail "requests at once (3 ranks, 2 coordinators)"
/usr/bin/python3 "$check" same $port prompts.jsonl generate.h5 24 --concurrent --inline=off=off.ini --inline=on=on.ini ||
  fail "masks written in the requests (3 ranks, 2 coordinators)"
/usr/bin/python3 "$check" stream $port prompts.jsonl 24 || fail "streaming (3 ranks)"
stop_server TERM
/usr/bin/python3 "$check" record served3.h5 generate.h5 12 || fail "the record (3 ranks, 2 coordinators)"
"$mote" diff served1.h5 served3.h5 > diff.txt || fail "mote diff of two records"
"$mote" inspect served3.h5 > inspect.txt || fail "mote inspect of a record"

# A rank that dies fails the requests in flight with a 500 (an error event
# in a stream) naming it, and the server exits non-zero.
source "$root/tests/jobs/same_results.sh"
start_server dies.log "$run" -n 3 --oversubscribe serve --ignore-eos
curl -s -o died.json -w '%{http_code}' "http://127.0.0.1:$port/v1/completions" \
  -d '{"prompt": "Hello", "max_tokens": 1000}' > died.status &
unstreamed=$!
curl -s -N "http://127.0.0.1:$port/v1/completions" -d '{"prompt": "Hello", "max_tokens": 1000, "stream": true}' \
  > died.stream &
streamed=$!
first_bytes died.stream
victim=$(rank_pids 2 "$mote serve" | tail -n 1)
[ -n "$victim" ] && kill -9 "$victim"
wait $unstreamed $streamed
[ "$(cat died.status)" = 500 ] && grep -q 'rank 2 died' died.json ||
  fail "an unstreamed request when a rank died: status $(cat died.status): $(head -c 300 died.json)"
grep -q '^data: {"error":{"message":"the server failed before the request finished: rank 2 ' died.stream ||
  fail "a stream when a rank died ends: $(tail -c 300 died.stream)"
for _ in $(seq 1 300); do kill -0 $server_pid 2> /dev/null || break; sleep 0.1; done
if kill -0 $server_pid 2> /dev/null; then fail "the server still runs 30 s after a rank died"; kill -9 $server_pid; fi
wait $server_pid && fail "the server exited 0 after a rank died"
server_pid=""

# A server killed outright keeps what it recorded up to 2 s before; a new
# one refuses the record's checkpoint unless --resume continues it.
start_server crash.log "$mote" serve --record crash.h5
for i in 1 2; do status "{\"prompt\": \"Crash $i\", \"max_tokens\": 4}" /v1/completions 200; done
sleep 3
kill -9 $server_pid
wait $server_pid 2> /dev/null
server_pid=""
ls crash.h5.checkpoint/part-*.h5 > /dev/null 2>&1 || fail "a killed server left no part of its record"
[ -e crash.h5 ] && fail "a killed server left a record file"
refuses "holds the record of a server that did not shut down" --record crash.h5 --port 0
start_server resumed.log "$mote" serve --record crash.h5 --resume
status '{"prompt": "After", "max_tokens": 4}' /v1/completions 200
stop_server TERM
/usr/bin/python3 -c '
import h5py, sys
f = h5py.File("crash.h5")
r = f["requests"]
prompts = [r[str(i)]["prompt_text"][()].decode() for i in range(len(r))]
sys.exit(0 if prompts == ["Crash 1", "Crash 2", "After"] and f.attrs["request_count"] == 3 else f"{prompts}")
' || fail "the resumed record does not hold the requests before and after the kill"
[ -e crash.h5.checkpoint ] && fail "the resumed record kept its checkpoint"

[ $failures -eq 0 ] || { echo "$failures failures"; exit 1; }
echo "serve: all checks passed"
