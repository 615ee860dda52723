#!/usr/bin/env bash
# On a GPU machine, from the repository root: CUDA build in build-gpu, ctest -L gpu, GPU bench, plan against a
# run, build-gpu/gpu-report.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${ZF_GPU_BUILD:-build-gpu}
jobs=$(nproc)
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$build"
log=$build/gpu-run.log
: > "$log"
say() { echo "$*" | tee -a "$log"; }

# a machine without Debian's packages or the fixtures gets them from tests/gpu/carry.sh's pack
carry=${ZF_GPU_CARRY:-.gpu-carry}
if [ -f "$carry/deps.tar.xz" ]; then
  . tests/gpu/carry.sh use "$carry" > "$build/carry.log" 2>&1
  carry_rc=$?
  tee -a "$log" < "$build/carry.log"
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
     -DCMAKE_CUDA_ARCHITECTURES="$arch" -DZF_FIXTURES_DIR="$fixtures" > "$build/configure.log" 2>&1; then
  cat "$build/configure.log"; say "FAILED: configure"; exit 1
fi
if ! grep -q "zfold: CUDA backend ON" "$build/configure.log"; then
  cat "$build/configure.log"; say "FAILED: configured without the CUDA backend (no CUDA toolkit found?)"; exit 1
fi
if ! cmake --build "$build" -j "$jobs" > "$build/build.log" 2>&1; then
  tail -40 "$build/build.log"; say "FAILED: build (full log in $build/build.log)"; exit 1
fi

status=0
(cd "$build" && ctest -L gpu --no-tests=error --output-on-failure) 2>&1 | tee "$build/ctest-gpu.log" | tee -a "$log"
ctest_rc=${PIPESTATUS[0]}
summary=$(grep -E "tests passed|tests failed" "$build/ctest-gpu.log" | tail -1)
skipped=$(grep -E "\(Skipped\)" "$build/ctest-gpu.log" | sed 's/^[[:space:]]*//')
if [ "$ctest_rc" -ne 0 ]; then say "FAILED: gpu tests"; status=1; fi
if [ -n "$skipped" ]; then say "FAILED: gpu tests skipped (no device found):"; say "$skipped"; status=1; fi

report=$build/gpu-report.md
{
  echo "# zfold GPU report"
  echo
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname)"
  echo "- GPUs: $(echo "${gpus:-none visible}" | paste -sd ';' -)"
  echo "- ctest -L gpu: ${summary:-no summary}${skipped:+; skipped: $(echo "$skipped" | tr '\n' ' ')}"
  echo
} > "$report"
if [ -n "$gpus" ] && [ -x "$build/zfold_gpu_bench" ]; then
  if ! "$build/zfold_gpu_bench" --json "$build/gpu-bench.json" >> "$report" 2> "$build/gpu-bench.err"; then
    cat "$build/gpu-bench.err"; say "FAILED: zfold_gpu_bench"; status=1
  fi
  { echo; echo "## zfold plan against a run, backend cuda"; echo; } >> "$report"
  if ! bench/plan_check.sh "$build" --set backend=cuda >> "$report" 2>&1; then say "FAILED: bench/plan_check.sh"; status=1; fi
else
  echo "(GPU bench not run: no device or no zfold_gpu_bench)" >> "$report"
  status=1
fi
cat "$report"
echo "report: $report; bench JSON: $build/gpu-bench.json; logs in $build"
exit $status
