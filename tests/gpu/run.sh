#!/usr/bin/env bash
# On a GPU machine, from the repository root: CUDA build in build-gpu, ctest -L gpu, GPU bench, plan against a
# run, and a report (gpu-report.md) with the logs in $OUT when it is set, else in build-gpu.
#
#   ZF_GPU_STAGES   which of "test bench plan" to run after the build (default: all three)
#   ZF_GPU_SANITIZE a compute-sanitizer tool (memcheck, racecheck, synccheck, initcheck) to run test_gpu_parity's
#                   reduced set under instead of the stages, for at most ZF_GPU_SANITIZE_TIMEOUT s (default 500);
#                   ZF_GPU_PARITY_PARTS (hessian,forward,quant,nomem) picks parts of it for a slow tool
#   ZF_GPU_CARRY    where tests/gpu/carry.sh's pack is (default .gpu-carry), used when present
#   ZF_COMMIT       the commit to name in the report where the tree has no .git
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${ZF_GPU_BUILD:-build-gpu}
logs=${OUT:-$build}
stages=${ZF_GPU_STAGES:-test bench plan}
jobs=$(nproc)
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$build" "$logs"
log=$logs/gpu-run.log
: > "$log"
say() { echo "$*" | tee -a "$log"; }
stage() { [[ " $stages " == *" $1 "* ]]; }

# a machine without Debian's packages or the fixtures gets them from tests/gpu/carry.sh's pack
carry=${ZF_GPU_CARRY:-.gpu-carry}
if [ -f "$carry/deps.tar.xz" ]; then
  . tests/gpu/carry.sh use "$carry" > "$logs/carry.log" 2>&1
  carry_rc=$?
  tee -a "$log" < "$logs/carry.log"
  [ "$carry_rc" -eq 0 ] || { say "FAILED: unpacking $carry"; exit 1; }
fi
fixtures=${ZF_FIXTURES:-$PWD/../shared/fixtures}
if [ ! -f "$fixtures/README.md" ]; then
  say "FAILED: no fixtures at $fixtures: set ZF_FIXTURES, or run 'bash tests/gpu/carry.sh pack' where they are" \
      "and bring $carry along"
  exit 1
fi

if gpus=$(nvidia-smi -L 2>/dev/null) && [ -n "$gpus" ]; then
  arch=native
  say "GPUs: $(echo "$gpus" | wc -l)"; echo "$gpus" | tee -a "$log"
else
  arch="80;90"
  gpus=""
  say "no GPU visible (nvidia-smi -L failed or listed none): building for sm_80/sm_90; the gpu tests will skip"
fi
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
nvcc_bin=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
toolkit=$("$nvcc_bin" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
driver=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\.[0-9]*\).*/\1/p' | head -1)
say "CUDA toolkit ${toolkit:-not found} ($nvcc_bin), driver's CUDA ${driver:-unknown}; $(cmake --version | head -1);" \
    "$(${CC:-cc} --version 2>/dev/null | head -1)"
if [ -n "$toolkit" ] && [ -n "$driver" ] && [ "${driver%%.*}" -lt "${toolkit%%.*}" ]; then
  say "FAILED: the driver runs CUDA $driver programs, the toolkit builds for CUDA $toolkit: set CUDACXX to an" \
      "older toolkit's nvcc"
  exit 1
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if ! cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DZF_WITH_CUDA=ON \
     -DCMAKE_CUDA_ARCHITECTURES="$arch" -DZF_FIXTURES_DIR="$fixtures" > "$logs/configure.log" 2>&1; then
  cat "$logs/configure.log"; say "FAILED: configure"; exit 1
fi
if ! grep -q "zfold: CUDA backend ON" "$logs/configure.log"; then
  cat "$logs/configure.log"; say "FAILED: configured without the CUDA backend (no CUDA toolkit found?)"; exit 1
fi
if ! cmake --build "$build" -j "$jobs" > "$logs/build.log" 2>&1; then
  tail -40 "$logs/build.log"; say "FAILED: build (full log in $logs/build.log)"; exit 1
fi
say "built $build"

if [ -n "${ZF_GPU_SANITIZE:-}" ]; then
  sanitizer=$(command -v compute-sanitizer || echo "$(dirname "$nvcc_bin")/compute-sanitizer")
  say "$sanitizer --tool $ZF_GPU_SANITIZE on test_gpu_parity (reduced set)"
  # initcheck sees the poisoning memsets as initialization: without them it can report a read before the write
  poison=1
  [ "$ZF_GPU_SANITIZE" != initcheck ] || poison=0
  ZF_FIXTURES=$fixtures ZF_GPU_PARITY_REDUCED=1 ZF_CUDA_POISON=$poison timeout "${ZF_GPU_SANITIZE_TIMEOUT:-500}" \
    "$sanitizer" --tool "$ZF_GPU_SANITIZE" --error-exitcode 9 \
    "$build/tests/test_gpu_parity" > "$logs/sanitize-$ZF_GPU_SANITIZE.log" 2>&1
  rc=$?
  tail -30 "$logs/sanitize-$ZF_GPU_SANITIZE.log"
  [ "$rc" -eq 0 ] && say "compute-sanitizer $ZF_GPU_SANITIZE: clean" || say "FAILED: compute-sanitizer (exit $rc)"
  exit "$rc"
fi

status=0
summary="not run" skipped=""
if stage test; then
  # every test's whole output (the parity errors next to their tolerances) goes to ctest-gpu.log; its summary here
  (cd "$build" && ctest -L gpu --no-tests=error -V) > "$logs/ctest-gpu.log" 2>&1
  ctest_rc=$?
  grep -E "^ *[0-9]+/[0-9]+ Test|FAILED|failed|tests passed" "$logs/ctest-gpu.log" | tee -a "$log"
  summary=$(grep -E "tests passed|tests failed" "$logs/ctest-gpu.log" | tail -1)
  skipped=$(grep -E "\(Skipped\)" "$logs/ctest-gpu.log" | sed 's/^[[:space:]]*//')
  if [ "$ctest_rc" -ne 0 ]; then say "FAILED: gpu tests"; status=1; fi
  if [ -n "$skipped" ]; then say "FAILED: gpu tests skipped (no device found):"; say "$skipped"; status=1; fi
fi

report=$logs/gpu-report.md
{
  echo "# zfold GPU report"
  echo
  echo "- commit: ${ZF_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}," \
       "$(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname)"
  echo "- GPUs: $(echo "${gpus:-none visible}" | paste -sd ';' -)"
  echo "- CUDA toolkit ${toolkit:-?}, driver's CUDA ${driver:-?}"
  echo "- ctest -L gpu: ${summary:-no summary}${skipped:+; skipped: $(echo "$skipped" | tr '\n' ' ')}"
  echo
} > "$report"
if [ -z "$gpus" ] || [ ! -x "$build/zfold_gpu_bench" ]; then
  if stage bench || stage plan; then
    echo "(GPU bench and plan check not run: no device or no zfold_gpu_bench)" >> "$report"
    status=1
  fi
else
  if stage bench && ! "$build/zfold_gpu_bench" --json "$logs/gpu-bench.json" >> "$report" 2>> "$log"; then
    tail -20 "$log"; say "FAILED: zfold_gpu_bench"; status=1
  fi
  if stage plan; then
    { echo; echo "## zfold plan against a run, backend cuda"; echo; } >> "$report"
    if ! bench/plan_check.sh "$build" --set backend=cuda >> "$report" 2>&1; then
      say "FAILED: bench/plan_check.sh"; status=1
    fi
  fi
fi
cat "$report"
echo "report and logs in $logs"
exit $status
