#!/usr/bin/env bash
# SIGTERM every rank of a parallel-schedule run while its owners quantize; the blocks whose units all finished
# are written, the exit code is 3, and the resumed run's shards equal an uninterrupted run's byte for byte; with
# a Hessian cache the resume reads every Hessian it needs and gives the same codes.
export ZF_TEST_WINDOWS=8
source "$(dirname "$0")/common.sh"
set +e
sed -i "s#/stories260k\$#/llama-mini#; s#seq_len: 512#seq_len: 256#; s#max_windows: 16#max_windows: 4#" "$work/run.yaml"
echo "schedule: parallel" >> "$work/run.yaml"
run 2 "$work/ref" || { bad "reference run: $(tail -3 "$work/ref.log")"; finish; exit 1; }
nblocks=$(ls "$work"/ref/blocks/*.h5 | wc -l)
stopped=0
for trial in 1 2 3; do
  rm -rf "$work/out"
  extra=()   # the last trial keeps a Hessian cache: a stopped run stores every reduced Hessian for the resume
  [ "$trial" -eq 3 ] && extra=(--set calibration.cache="$work/hcache")
  mpirun -np 2 "$zfold" quantize "$work/run.yaml" "${extra[@]}" > "$work/int.log" 2>&1 &
  mpi=$!
  deadline=$((SECONDS + 120))
  until grep -q "calibration pass done" "$work/int.log" || ! kill -0 $mpi 2>/dev/null || [ $SECONDS -ge $deadline ]; do
    sleep 0.01
  done
  sleep "0.0$((RANDOM % 10))"   # quantizing llama-mini's blocks takes a fraction of a second
  kill -TERM $(pgrep -P $mpi -f "zfold quantize") 2>/dev/null || true
  wait $mpi; rc=$?
  written=$(ls "$work"/out/blocks/*.h5 2>/dev/null | wc -l)
  if [ "$rc" -eq 3 ] && [ "$written" -eq "$nblocks" ] && grep -q "stopped by a signal during evaluation" "$work/int.log"; then
    ok "trial $trial: every block written, stopped during evaluation"
  elif [ "$rc" -eq 3 ]; then
    stopped=$((stopped + 1))
    grep -q "while quantizing (parallel schedule): the first $written of $nblocks blocks are written" "$work/int.log" \
      && ok "trial $trial: stopped with $written of $nblocks blocks written" \
      || bad "trial $trial: exit 3 without the stop message for $written blocks: $(grep -m1 error "$work/int.log")"
  elif [ "$rc" -ne 0 ] || [ "$written" -ne "$nblocks" ]; then
    bad "trial $trial: exit code $rc with $written of $nblocks blocks"; continue
  fi
  mpirun -np 2 "$zfold" quantize "$work/run.yaml" "${extra[@]}" > "$work/resume.log" 2>&1 \
    || { bad "trial $trial: resume: $(tail -3 "$work/resume.log")"; continue; }
  if [ "$trial" -eq 3 ] && [ "$rc" -eq 3 ]; then
    want=$((4 * (nblocks - written)))
    grep -q "Hessian cache .*: $want read" "$work/resume.log" && ok "trial 3: the resume read all $want Hessians left" \
      || bad "trial 3: expected $want cached Hessians: $(grep 'Hessian cache' "$work/resume.log")"
  fi
  if [ "$trial" -eq 3 ]; then   # the shards record the cache setting: compare codes and perplexity instead
    "$zfold" compare "$work/ref" "$work/out" --min-agreement 1 --max-ppl-diff 1e-6 > "$work/cmp" \
      && ok "trial 3 (exit $rc), resumed through the cache: $(grep -o 'codes agreeing:.*' "$work/cmp")" \
      || { bad "trial 3: resumed run differs"; cat "$work/cmp"; }
  else
    same_as_ref "$work/ref" && ok "trial $trial (exit $rc), resumed: every shard identical" \
      || bad "trial $trial: shards differ after resume"
  fi
done
[ "$stopped" -gt 0 ] && ok "$stopped of 3 trials stopped while quantizing" || bad "no trial was stopped while quantizing"
finish
