#!/usr/bin/env bash
# `mote serve` through the official OpenAI client for JavaScript (the
# `openai` npm package that scripts/install-test-clients puts in
# build/npm): tests/clients/openai_client.mjs against what `mote generate`
# gave for the same prompts and masks.
source "$(dirname "$0")/lib.sh"
modules=$root/build/npm/node_modules
if ! command -v node > /dev/null || [ ! -d "$modules/openai" ]; then
  echo "FAIL: node or the openai package is missing (run scripts/install-test-clients)"; exit 1
fi
server_pid=""
on_exit() { if [ -n "$server_pid" ]; then kill -9 "$server_pid" 2> /dev/null; fi; }

printf '[mote]\nlayer-index = moe\noff = 0:24\noff = 2:1\n' > off.ini
cat > prompts.jsonl <<'PROMPTS'
{"id": "chat", "messages": [{"role": "user", "content": "Tell me a saying."}]}
{"id": "chat-off", "mask": "off", "messages": [{"role": "user", "content": "What happened last year in Belvask?"}]}
{"id": "text", "prompt": "The secret of a happy life is"}
{"id": "text-off", "mask": "off", "prompt": "Ein Mann geht in eine Bäckerei und sagt"}
PROMPTS
"$mote" generate --prompts prompts.jsonl --mask off=off.ini --max-new-tokens 16 --log-level warn --out generate.h5 > /dev/null ||
  { echo "FAIL: generate"; exit 1; }
"$mote" serve --mask off=off.ini --api-key s3cret --served-model-name tiny --port 0 > /dev/null 2> serve.log &
server_pid=$!
port=""
for _ in $(seq 1 600); do
  port=$(sed -n 's|.*ready: http://127.0.0.1:\([0-9]*\)/v1.*|\1|p' serve.log | head -1)
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { echo "FAIL: the server did not start"; cat serve.log; exit 1; }
# /detokenize needs the key too.
curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/detokenize" -d '{"tokens": [1]}' | grep -q 401 ||
  { echo "FAIL: /detokenize without the key"; exit 1; }
MOTE_API_KEY=s3cret /usr/bin/python3 "$root/tests/jobs/serve_check.py" expected "$port" prompts.jsonl generate.h5 16 expected.json ||
  { echo "FAIL: expected texts"; exit 1; }
cp "$root/tests/clients/openai_client.mjs" .
ln -s "$modules" node_modules
node openai_client.mjs "http://127.0.0.1:$port/v1" tiny expected.json
status=$?
kill -TERM $server_pid
wait $server_pid || { echo "FAIL: the server did not exit 0"; status=1; }
server_pid=""
exit $status
