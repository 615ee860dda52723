#!/usr/bin/env bash
# Faults injected into a run's writes (tests/faults/faultshim.c): a full disk after every N bytes, EIO from the k-th
# fsync, SIGKILL at the k-th rename; and the launcher's signals. Each must end in a clear error (exit code 1 naming the
# file and the reason, no crash, no temporary file left) or a kill, and the next run must resume to shards
# byte-identical to an uninterrupted run. Usage: inject.sh ZFOLD SHIM [quick|all] (quick samples the fault points).
source "$(dirname "$0")/../lib.sh"
shim=$2
mode=${3:-quick}
set +e
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cat > "$work/run.yaml" <<YAML
model: $fixtures/stories260k
output: $work/out
method: rtn
calibration:
  file: $fixtures/data/wikitext2-valid.tok512.bin
  windows: 4
  seq_len: 128
eval:
  files: [$fixtures/data/tinystories.tok512.bin]
  max_windows: 2
  fp: false
YAML
sed "s#$work/out#$work/ref#" "$work/run.yaml" > "$work/ref.yaml"
"$zfold" quantize "$work/ref.yaml" > "$work/ref.log" 2>&1 || { bad "reference run: $(tail -3 "$work/ref.log")"; finish; exit 1; }
total=$(find "$work/ref" -type f -printf '%s\n' | awk '{s += $1} END {print s}')

same_as_ref() {
  for f in "$work"/ref/blocks/*.h5 "$work/ref/unquantized.h5"; do
    cmp -s "$f" "$work/out/${f#"$work"/ref/}" || return 1
  done
}
# faulty VAR=VALUE: one run under the shim; prints its exit code
faulty() {
  env LD_PRELOAD="$shim" ZF_FAULT_DIR="$work/out" "$1" "$zfold" quantize "$work/run.yaml" > "$work/fault.log" 2>&1
  echo $?
}
resume_check() {
  local what=$1
  "$zfold" quantize "$work/run.yaml" > "$work/resume.log" 2>&1 || { bad "$what: resume failed: $(grep error "$work/resume.log")"; return; }
  [ -z "$(find "$work/out" -name '*.tmp.*')" ] || bad "$what: temporary files left after the resume: $(find "$work/out" -name '*.tmp.*')"
  same_as_ref && ok "$what: resumed, shards byte-identical" || bad "$what: shards differ from the uninterrupted run"
}
points() { # points N: the fault points to try, 1..N (every one with "all", about 6 spread out with "quick")
  if [ "$mode" = all ]; then seq 1 "$1"; else seq 1 $(( ($1 + 5) / 6 )) "$1"; fi
}

# 1. a full disk after every N bytes
[ "$mode" = all ] && step=4096 || step=$((total / 6))
for budget in $(seq 0 "$step" "$total"); do
  rm -rf "$work/out"
  rc=$(faulty ZF_FAULT_ENOSPC_AFTER=$budget)
  if [ "$rc" -ne 1 ]; then bad "ENOSPC after $budget bytes: exit code $rc, expected 1: $(tail -2 "$work/fault.log")"; continue; fi
  msg=$(grep 'error' "$work/fault.log")
  echo "$msg" | grep -q "$work/out/.*No space left on device (ENOSPC" \
    || bad "ENOSPC after $budget bytes: the message does not name the file and ENOSPC: $msg"
  [ -z "$(find "$work/out" -name '*.tmp.*')" ] || bad "ENOSPC after $budget bytes: temporary file left"
  resume_check "ENOSPC after $budget bytes"
done

# each_point VAR LIMIT WHAT RC NEEDLE: VAR=k for the fault points k up to LIMIT or the first run that finishes; each
# run must exit with RC, its output hold NEEDLE, and the next run resume
each_point() {
  local var=$1 limit=$2 what=$3 want=$4 needle=$5 k rc
  for k in $(points "$limit"); do
    rm -rf "$work/out"
    rc=$(faulty "$var=$k")
    [ "$rc" -eq 0 ] && break
    if [ "$rc" -ne "$want" ] || ! grep -q "$needle" "$work/fault.log"; then
      bad "$what $k: exit code $rc (expected $want): $(grep error "$work/fault.log")"; continue
    fi
    resume_check "$what $k"
  done
}
# 2. EIO from the k-th fsync
each_point ZF_FAULT_FSYNC_EIO 60 "EIO at fsync" 1 "fsync of $work/out.*Input/output error (EIO)"
# 3. SIGKILL at the k-th rename
each_point ZF_FAULT_KILL_AT_RENAME 30 "kill at rename" 137 ""

# 4. signals through mpirun: Open MPI forwards SIGUSR1 to the ranks, which stop after the block (exit code 3)
if command -v mpirun > /dev/null; then
  sed -i "s/windows: 4$/windows: 64/; s/seq_len: 128/seq_len: 512/; s/method: rtn/method: zfold/" "$work/run.yaml"
  rm -rf "$work/out"
  mpirun -np 2 "$zfold" quantize "$work/run.yaml" > "$work/mpi.log" 2>&1 &
  mpi=$!
  for _ in $(seq 600); do grep -q '"block"' "$work/out/manifest.json" 2>/dev/null && break; sleep 0.1; done
  kill -USR1 $mpi
  wait $mpi
  rc=$?
  blocks=$(grep -c '"block":' "$work/out/manifest.json")
  if [ "$blocks" -lt 5 ]; then
    [ "$rc" -eq 3 ] && ok "SIGUSR1 to mpirun: exit code 3 after $blocks blocks" || bad "SIGUSR1 to mpirun: exit code $rc, expected 3"
  else
    ok "SIGUSR1 to mpirun arrived after the last block (exit code $rc)"
  fi
  mpirun -np 2 "$zfold" quantize "$work/run.yaml" > "$work/mpi2.log" 2>&1 && grep -q "resuming" "$work/mpi2.log" \
    && ok "mpirun run resumed after SIGUSR1" || bad "mpirun resume after SIGUSR1: $(grep error "$work/mpi2.log")"
fi
finish
