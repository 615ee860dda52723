#!/usr/bin/env bash
# NCCL faults in mpirun -np 2 runs on the CUDA emulator: a collective that hangs ends the job at gpu.comm_timeout and a failing one at once, each naming the collective and the rank; the same command then resumes and finishes.
set -uo pipefail
zfold=$1
root=${ZF_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
fixtures=${ZF_FIXTURES:-$root/../shared/fixtures}
if [ "${ZF_CUDA_EMULATOR:-OFF}" != ON ]; then   # set by CTest from the build's configuration
  echo "SKIPPED: the faults are injected by the CUDA emulator's NCCL (a build with -DZF_CUDA_EMULATOR=ON)"
  exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/zfnccl.XXXXXX")
[ -n "${ZT_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export ZF_CUDA_EMU_DEVICES=2   # one emulated GPU per rank
passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAILED: $*"; failed=$((failed + 1)); }

sed "s#\.\./shared/fixtures#$fixtures#g" "$root/configs/stories260k.yaml" > "$work/run.yaml"
timeout_s=3
run() {   # run LOG [VAR=VALUE ...]: the quantization under mpirun -np 2 with the given fault variables
  local log=$1; shift
  env "$@" timeout 600 mpirun -np 2 "$zfold" quantize "$work/run.yaml" --set "output=$work/run" --set backend=cuda \
    --set calibration.windows=4 --set eval.max_windows=2 --set "gpu.comm_timeout=$timeout_s" > "$log" 2>&1
}

# expect_failure NAME LOG RC PHRASE...: the job ended by itself, not by the watchdog, with every phrase in its log
expect_failure() {
  local name=$1 log=$2 rc=$3; shift 3
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
    bad "$name: exit $rc (expected a failure before the 600 s watchdog)"; tail -5 "$log"; return
  fi
  for phrase in "$@"; do
    if ! grep -qF -- "$phrase" "$log"; then
      bad "$name: exit $rc but the log lacks \"$phrase\""; tail -5 "$log"; return
    fi
  done
  ok "$name: exit $rc; $(grep -m1 -F -- "$1" "$log" | sed 's/^.*\] //')"
}

t0=$(date +%s)
run "$work/hang.log" ZF_NCCL_EMU_HANG=reduce ZF_NCCL_EMU_RANK=1
rc=$?
expect_failure "Hessian reduce hangs on rank 1" "$work/hang.log" "$rc" "no progress for $timeout_s s" "NCCL reduce" \
  "ending the job"
echo "  (ended after $(($(date +%s) - t0)) s)"

run "$work/fail.log" ZF_NCCL_EMU_FAIL=broadcast ZF_NCCL_EMU_RANK=0
rc=$?
expect_failure "result broadcast fails on rank 0" "$work/fail.log" "$rc" "NCCL broadcast on rank 0 of 2" \
  "injected failure" "ending the job"

# nothing half-written was left behind: the same command finishes the run
if run "$work/resume.log" && [ -s "$work/run/report.json" ]; then
  ok "the same command then finishes the run ($(grep -c '"block"' "$work/run/report.json") blocks in report.json)"
else
  bad "the run did not finish after the faults: $(tail -3 "$work/resume.log")"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
