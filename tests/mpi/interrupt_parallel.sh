#!/usr/bin/env bash
# SIGTERM every rank of a parallel-schedule run while its owners quantize; the blocks whose units all finished
# are written, the exit code is 3, and the resumed run's shards equal an uninterrupted run's byte for byte.
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
  mpirun -np 2 "$zfold" quantize "$work/run.yaml" > "$work/int.log" 2>&1 &
  mpi=$!
  deadline=$((SECONDS + 120))
  until grep -q "calibration pass done" "$work/int.log" || ! kill -0 $mpi 2>/dev/null || [ $SECONDS -ge $deadline ]; do
    sleep 0.01
  done
  sleep "0.$((RANDOM % 3))"
  kill -TERM $(pgrep -P $mpi -f "zfold quantize") 2>/dev/null || true
  wait $mpi; rc=$?
  written=$(ls "$work"/out/blocks/*.h5 2>/dev/null | wc -l)
  if [ "$rc" -eq 3 ]; then
    stopped=$((stopped + 1))
    grep -q "while quantizing (parallel schedule): the first $written of $nblocks blocks are written" "$work/int.log" \
      && ok "trial $trial: stopped with $written of $nblocks blocks written" \
      || bad "trial $trial: exit 3 without the stop message for $written blocks: $(grep -m1 error "$work/int.log")"
  elif [ "$rc" -ne 0 ] || [ "$written" -ne "$nblocks" ]; then
    bad "trial $trial: exit code $rc with $written of $nblocks blocks"; continue
  fi
  mpirun -np 2 "$zfold" quantize "$work/run.yaml" > "$work/resume.log" 2>&1 \
    || { bad "trial $trial: resume: $(tail -3 "$work/resume.log")"; continue; }
  same_as_ref "$work/ref" && ok "trial $trial (exit $rc), resumed: every shard identical" \
    || bad "trial $trial: shards differ after resume"
done
[ "$stopped" -gt 0 ] && ok "$stopped of 3 trials stopped while quantizing" || bad "no trial was stopped while quantizing"
finish
