# Sourced by the world-size tests.
# same A B: requests (tokens, logits, routing, texts) and counters are bit-identical.
same() {
  for object in /requests /counts /gate_sum /classes; do
    if ! h5diff -q "$1" "$2" "$object" "$object"; then
      echo "FAIL: $2 differs from $1 in $object"; h5diff -r "$1" "$2" "$object" "$object" | head -20; exit 1
    fi
  done
}
