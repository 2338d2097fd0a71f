#!/usr/bin/env bash
# No command writes over a file it reads. For every command `mote --help`
# lists, every output option (from the command's --file-options) is pointed
# at the file of every input option: each run must be refused with the
# guard's message, before any work, and leave the directory exactly as it
# was. Then the cases that are not option against option: two outputs on
# one file, a dangling link, and a mask's include.
source "$(dirname "$0")/lib.sh"

snapshot() { find . -printf '%p %y %s %T@\n' | sort; }  # run inside case/; messages go to ../
failures=0
checked=0
commands=$("$mote" --help | awk '/^Commands:/ {on = 1; next} on && NF {print $1}')
[ -n "$commands" ] || { echo "FAIL: no commands in mote --help"; exit 1; }
for command in $commands; do
  options=$("$mote" "$command" --file-options) || { echo "FAIL: $command --file-options"; exit 1; }
  outputs=$(awk '$1 == "output" {print $2}' <<< "$options")
  inputs=$(awk '$1 == "input" {print $2 ":" $3}' <<< "$options")
  for out in $outputs; do
    for entry in $inputs; do
      in=${entry%%:*} kind=${entry#*:}
      rm -rf case && mkdir case && cd case || exit 1
      if [ "$kind" = DIR ]; then
        mkdir dir && echo "# keep me" > dir/config.json
        value=dir target=dir/config.json expected="--$out $target: is a file of the directory --$in names"
      else
        echo "# keep me" > input.txt
        value=input.txt target=input.txt expected="--$out $target: is the file --$in names"
        [ "$kind" = "CLASS=FILE" ] && value="c=input.txt"
        [ "$in" = config ] && expected="--$out $target: is the job file"
      fi
      before=$(snapshot)
      "$mote" "$command" "--$in" "$value" "--$out" "$target" > ../out.txt 2> ../err.txt
      status=$?
      after=$(snapshot)
      if [ "$status" -ne 1 ] || ! grep -qF -- "$expected" ../err.txt; then
        echo "FAIL: mote $command --$in $value --$out $target: status $status, expected 1 and '$expected'"; cat ../err.txt
        failures=$((failures + 1))
      elif [ "$before" != "$after" ] || ! grep -qx "# keep me" "$target"; then
        echo "FAIL: mote $command --$in --$out: the directory changed"; diff <(echo "$before") <(echo "$after")
        failures=$((failures + 1))
      fi
      checked=$((checked + 1))
      cd .. || exit 1
    done
  done
done
[ "$checked" -ge 30 ] || { echo "FAIL: only $checked output/input pairs found"; exit 1; }
echo "every output option against every input option of every command: $checked pairs refused, nothing changed"

expect_refused() {  # expect_refused MESSAGE COMMAND...
  local message=$1
  shift
  if "$@" > /dev/null 2> err.txt; then echo "FAIL: accepted: $*"; failures=$((failures + 1)); return; fi
  grep -qF -- "$message" err.txt || { echo "FAIL: $*: expected '$message'"; cat err.txt; failures=$((failures + 1)); }
}
rm -rf case && mkdir case && cd case || exit 1
echo '{"id": "a", "prompt": "Hello"}' > prompts.jsonl
printf '[mote]\nlayer-index = moe\noff = 0:1\noff = 1:2\n' > target.ini
cp target.ini target.orig
# random-mask reading and writing one mask.
expect_refused "--out target.ini: is the file --" "$mote" random-mask --like target.ini --exclude target.ini --out target.ini
cmp -s target.ini target.orig || { echo "FAIL: random-mask changed its input"; failures=$((failures + 1)); }
# Two outputs on one file.
expect_refused "--out e.h5: --csv writes this file too" \
  "$mote" experiment --prompts prompts.jsonl --target-mask target.ini --random 1 --out e.h5 --csv e.h5
# The CSV's default name (OUT with .csv) is an input.
cp prompts.jsonl p.csv
expect_refused "--csv (OUT with .csv) p.csv: is the file --prompts names" \
  "$mote" experiment --prompts p.csv --target-mask target.ini --random 1 --out p.h5
[ ! -e p.h5.conditions ] || { echo "FAIL: the experiment wrote its conditions before refusing"; failures=$((failures + 1)); }
# An output that is the same file under another name (a hard link).
ln target.ini alias.ini
expect_refused "--out alias.ini: is the file --exclude names (target.ini, the same file)" \
  "$mote" random-mask --count 1 --exclude target.ini --out alias.ini
# A dangling symbolic link is neither replaced nor followed.
ln -s nowhere.h5 dangling.h5
expect_refused "--out dangling.h5: is a symbolic link to nowhere.h5, which does not exist" \
  "$mote" generate --prompts prompts.jsonl --max-new-tokens 1 --out dangling.h5
[ -L dangling.h5 ] && [ ! -e nowhere.h5 ] || { echo "FAIL: the dangling link was replaced or followed"; failures=$((failures + 1)); }
# A file read through a mask's include, found only once the mask is read.
printf '[mote]\ninclude = target.ini\n' > outer.ini
expect_refused "--out target.ini: is the mask file the command reads" \
  "$mote" generate --prompts prompts.jsonl --max-new-tokens 1 --mask outer.ini --out target.ini
cmp -s target.ini target.orig || { echo "FAIL: the include was replaced"; failures=$((failures + 1)); }
printf '[mote]\nlayer-index = moe\ngain = 0:1:1.5\n' > gain.ini
cp gain.ini gain.orig
printf '[mote]\ninclude = gain.ini\n' > outer-gain.ini
expect_refused "--mask-out gain.ini: is the mask file the command reads" \
  "$mote" scan --prompts prompts.jsonl --tokens I --mask outer-gain.ini --candidates target.ini --top 1 --mask-out gain.ini --out s.h5
[ ! -e s.h5 ] || { echo "FAIL: the scan ran"; failures=$((failures + 1)); }
cmp -s gain.ini gain.orig || { echo "FAIL: the scan replaced the include"; failures=$((failures + 1)); }
[ "$failures" -eq 0 ] || { echo "$failures failures"; exit 1; }
echo "two outputs on one file, a hard link, a dangling link and an include: refused, nothing changed"
