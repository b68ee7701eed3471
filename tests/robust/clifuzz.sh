#!/bin/bash
# ctx CLI on damaged copies of a data directory: every run must exit with a code < 128 (no signal)
CTX=$1; SRC=$2; N=${3:-30}; T=${TMPDIR:-/tmp}/ctx-clifuzz; rm -rf $T; mkdir -p $T
crashes=0; runs=0
declare -A codes
for i in $(seq 1 $N); do
  rm -rf $T/d; cp -r $SRC $T/d
  f=$(ls $T/d | shuf -n1); sz=$(stat -c %s $T/d/$f)
  mode=$((RANDOM % 4))
  if [ $sz -gt 0 ]; then
    case $mode in
      0|1) for k in 1 2 3; do off=$(( (RANDOM*32768+RANDOM) % sz )); printf "\\x$(printf %02x $((RANDOM%256)))" | dd of=$T/d/$f bs=1 seek=$off conv=notrunc status=none; done; what="flip3@$f";;
      2) truncate -s $(( (RANDOM*32768+RANDOM) % sz )) $T/d/$f; what="trunc@$f";;
      3) off=$(( (RANDOM*32768+RANDOM) % sz )); head -c 4096 /dev/urandom | dd of=$T/d/$f bs=1 seek=$off conv=notrunc status=none; what="4k-garbage@$f";;
    esac
  fi
  for cmd in "verify $T/d" "inspect $T/d" "export $T/d $T/out.jsonl" ; do
    timeout 60 $CTX $cmd > $T/o 2> $T/e; rc=$?; runs=$((runs+1))
    codes["$rc"]=$(( ${codes["$rc"]:-0} + 1 ))
    if [ $rc -ge 124 ]; then crashes=$((crashes+1)); echo "CRASH rc=$rc: $what: ctx $cmd"; head -3 $T/e; cp -r $T/d $T/crash$i; fi
    if [ $rc -ne 0 ] && [ ! -s $T/e ]; then echo "SILENT rc=$rc: $what: ctx $cmd"; fi
  done
  [ $i -le 3 ] && { echo "[$what] verify: $(timeout 60 $CTX verify $T/d 2>&1 | head -2 | tr '\n' ' ')"; }
done
echo "runs $runs crashes $crashes exit codes: $(for k in "${!codes[@]}"; do echo -n "$k:${codes[$k]} "; done)"
