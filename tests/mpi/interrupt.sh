#!/usr/bin/env bash
# Kill a rank (SIGKILL) or stop the job (SIGTERM to every rank) at a random block, resume, compare every shard
# byte for byte with an uninterrupted run of the same rank count; corrupt finished shards and resume.
export ZF_TEST_WINDOWS=64
source "$(dirname "$0")/common.sh"
set +e
run 2 "$work/ref" || { bad "reference run: $(tail -3 "$work/ref.log")"; finish; exit 1; }
blocks_done() { grep -o '"block":' "$work/out/manifest.json" 2>/dev/null | wc -l; }
for trial in 1 2 3; do
  for sig in KILL TERM; do
    rm -rf "$work/out"
    target=$(( (RANDOM + trial) % 4 + 1 ))   # stop once this many blocks are done (1..4 of 5)
    mpirun -np 2 "$zfold" quantize "$work/run.yaml" > "$work/int.log" 2>&1 &
    mpi=$!
    deadline=$((SECONDS + 120))
    while [ "$(blocks_done)" -lt "$target" ] && kill -0 $mpi 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
    ranks=$(pgrep -P $mpi -f "zfold quantize" || true)
    if [ "$sig" = KILL ]; then kill -KILL $(echo "$ranks" | tail -1) 2>/dev/null || true
    else kill -TERM $ranks 2>/dev/null || true; fi
    wait $mpi; rc=$?
    done_at=$(blocks_done)
    if [ "$sig" = TERM ] && [ "$done_at" -lt 5 ] && [ "$rc" -ne 3 ]; then bad "SIGTERM: exit code $rc, expected 3"; fi
    [ "$rc" -ne 0 ] || [ "$done_at" -eq 5 ] || bad "SIG$sig: exit code 0 with $done_at blocks"
    mpirun -np 2 "$zfold" quantize "$work/run.yaml" > "$work/resume.log" 2>&1 \
      || { bad "resume after SIG$sig: $(tail -3 "$work/resume.log")"; continue; }
    same_as_ref "$work/ref" && ok "SIG$sig after $done_at blocks (exit $rc), resumed: every shard identical" \
      || bad "SIG$sig after $done_at blocks: shards differ after resume"
  done
done
# corrupt finished shards: truncate one, flip bytes in another; resume recomputes them
printf 'garbage' | dd of="$work/out/blocks/block-0001.h5" bs=1 seek=2000 conv=notrunc status=none
truncate -s 1000 "$work/out/blocks/block-0003.h5"
mpirun -np 2 "$zfold" quantize "$work/run.yaml" > "$work/corrupt.log" 2>&1 || bad "resume after corruption"
grep -q "block-0001.h5" "$work/corrupt.log" && grep -q "block-0003.h5" "$work/corrupt.log" \
  && ok "corrupt shards reported" || bad "corrupt shards not reported: $(head -5 "$work/corrupt.log")"
same_as_ref "$work/ref" && ok "corrupt shards recomputed identically" || bad "shards differ after recomputing corrupt ones"
finish
