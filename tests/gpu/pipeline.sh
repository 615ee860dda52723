#!/usr/bin/env bash
# End to end: stories260k, llama-mini and opt-mini quantized with backend=cpu and backend=cuda agree (codes, ppl).
set -uo pipefail
zfold=$1
root=${ZF_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
fixtures=${ZF_FIXTURES:-$root/../shared/fixtures}
if [ "${ZF_HAVE_CUDA:-ON}" = OFF ]; then   # set by CTest from the build's configuration
  echo "SKIPPED: zfold was built without the CUDA backend (no toolkit found, or -DZF_WITH_CUDA=OFF)"
  exit 77
fi
if [ "${ZF_CUDA_EMULATOR:-OFF}" = ON ]; then   # the CPU emulator's devices (tests/cuda_emu)
  export ZF_CUDA_EMU_DEVICES=${ZF_CUDA_EMU_DEVICES:-2}
  ngpu=$ZF_CUDA_EMU_DEVICES
elif ! ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU '); then ngpu=0; fi
if [ "$ngpu" -eq 0 ]; then
  echo "SKIPPED: no CUDA device (nvidia-smi -L lists none)"
  exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/zfgpu.XXXXXX")
[ -n "${ZT_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export ZF_CUDA_POISON=1   # device buffers start as NaN, so a read before the write spoils the codes
export OPENBLAS_NUM_THREADS=${ZF_GPU_TEST_THREADS:-4} OMP_NUM_THREADS=${ZF_GPU_TEST_THREADS:-4}
windows=${ZF_GPU_TEST_WINDOWS:-32}   # calibration windows per run (the configs use 128)
evalwin=${ZF_GPU_TEST_EVAL_WINDOWS:-8}
if [ "${ZF_CUDA_EMULATOR:-OFF}" = ON ]; then   # the emulator runs kernels thread by thread: fewer windows
  windows=${ZF_GPU_TEST_WINDOWS:-8} evalwin=${ZF_GPU_TEST_EVAL_WINDOWS:-4}
fi
passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAILED: $*"; failed=$((failed + 1)); }

# quantize NAME DEST NP [--set ...]: configs/NAME.yaml with the fixture paths of this machine, into DEST
quantize() {
  local name=$1 dest=$2 np=$3; shift 3
  sed "s#\.\./shared/fixtures#$fixtures#g" "$root/configs/$name.yaml" > "$work/$name.yaml"
  local args=(quantize "$work/$name.yaml" --set "output=$dest" --set "calibration.windows=$windows"
              --set "eval.max_windows=$evalwin" "$@")
  if [ "$np" -eq 0 ]; then "$zfold" "${args[@]}" > "$dest.log" 2>&1
  else mpirun -np "$np" "$zfold" "${args[@]}" > "$dest.log" 2>&1; fi
}

# compare NAME A B WHAT: >= 99.9 % identical codes, every perplexity within 0.5 %. zfold compare passes runs
# without codes or without perplexities in report.json, so its output must show both.
compare() {
  local out
  out="$2-vs-$(basename "$3").cmp"
  if "$zfold" compare "$2" "$3" --min-agreement 0.999 --max-ppl-diff 0.005 > "$out" 2>&1 &&
     grep -q '^codes agreeing: [0-9]* of [1-9]' "$out" && grep -q '^ppl ' "$out"; then
    ok "$1 $4: $(grep -o 'codes agreeing:.*' "$out"); $(grep '^ppl ' "$out" | paste -sd ';' -)"
  else
    bad "$1 $4"; cat "$out"
  fi
}

# stories260k runs the default sequential schedule. The two minis run schedule=parallel (every block calibrated
# on full-precision inputs): sequentially, a handful of codes that flip at rounding ties in one block change the
# next block's inputs and Z-FOLD's ALS path, and the disagreement grows block by block (already between 1 and 2
# CPU ranks, from the reduction order alone), which would hide what this test compares: the backends.
declare -A sched=([stories260k]=sequential [llama-mini]=parallel [opt-mini]=parallel)
for name in stories260k llama-mini opt-mini; do
  set -- --set "schedule=${sched[$name]}"
  if ! quantize "$name" "$work/$name-cpu" 0 "$@" --set backend=cpu; then
    bad "$name backend=cpu: $(tail -3 "$work/$name-cpu.log")"; continue
  fi
  if quantize "$name" "$work/$name-cuda" 0 "$@" --set backend=cuda; then
    grep -q 'cuda:[0-9]' "$work/$name-cuda.log" "$work/$name-cuda/report.json" 2>/dev/null \
      || bad "$name backend=cuda: neither the log nor report.json names a cuda:N device"
    compare "$name" "$work/$name-cpu" "$work/$name-cuda" "(${sched[$name]}) cuda vs cpu"
  else
    bad "$name backend=cuda: $(tail -3 "$work/$name-cuda.log")"
  fi
  if [ "$ngpu" -ge 2 ]; then
    if quantize "$name" "$work/$name-cuda-np2" 2 "$@" --set backend=cuda; then
      compare "$name" "$work/$name-cpu" "$work/$name-cuda-np2" "(${sched[$name]}) mpirun -np 2 cuda vs cpu"
    else
      bad "$name mpirun -np 2 backend=cuda: $(tail -3 "$work/$name-cuda-np2.log")"
    fi
  else
    echo "skipped: $name mpirun -np 2 backend=cuda (needs 2 GPUs, $ngpu visible)"
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
