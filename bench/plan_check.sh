#!/usr/bin/env bash
# `zfold plan`'s predicted seconds per block against a real run's on the fixture configs, as a markdown table
# with their ratio (parallel schedule: the run's quantization time over its blocks). OpenBLAS gets nproc/N
# threads per rank in both.
# usage: bench/plan_check.sh BUILD_DIR [--ranks N] [--set KEY=VALUE]... [CONFIG.yaml]...
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: bench/plan_check.sh BUILD_DIR [--ranks N] [--set KEY=VALUE]... [CONFIG.yaml]...}" && pwd)
shift
ranks=1
sets=()
configs=()
while [ $# -gt 0 ]; do
  case $1 in
    --ranks) ranks=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    *) configs+=("$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"); shift ;;
  esac
done
[ ${#configs[@]} -gt 0 ] || configs=("$root"/configs/stories260k.yaml "$root"/configs/llama-mini.yaml "$root"/configs/opt-mini.yaml)
work=$(mktemp -d "${TMPDIR:-/tmp}/zfplancheck.XXXXXX")
trap 'rm -rf "$work"' EXIT
threads=$(( $(nproc) / ranks ))
[ "$threads" -ge 1 ] || threads=1
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
launch=()
[ "$ranks" -gt 1 ] && launch=(mpirun -np "$ranks")
cd "$root"   # the configs name the fixtures relative to the repository root
echo "| config | ranks | predicted s/block | measured s/block | measured / predicted |"
echo "|---|---|---|---|---|"
status=0
for cfg in "${configs[@]}"; do
  name=$(basename "$cfg" .yaml)
  if [ -n "${ZF_FIXTURES:-}" ]; then   # the fixtures elsewhere than ../shared/fixtures
    sed "s#\.\./shared/fixtures#$ZF_FIXTURES#g" "$cfg" > "$work/$name.yaml"
    cfg=$work/$name.yaml
  fi
  if ! "$build/zfold" plan "$cfg" --ranks "$ranks" "${sets[@]}" > "$work/$name.plan" 2>&1; then
    echo "| $name | $ranks | plan failed: $(tail -1 "$work/$name.plan") | | |"; status=1; continue
  fi
  predicted=$(grep -o '\*\*[0-9.]*\*\* (whole' "$work/$name.plan" | tr -d '*' | awk '{print $1}')
  if ! "${launch[@]}" "$build/zfold" quantize "$cfg" --set output="$work/$name" --set eval.max_windows=1 "${sets[@]}" \
       > "$work/$name.log" 2>&1; then
    echo "| $name | $ranks | $predicted | run failed: $(grep -m1 error "$work/$name.log") | |"; status=1; continue
  fi
  measured=$(grep -oE 'block [0-9]+/[0-9]+  [0-9.]+s' "$work/$name.log" | awk '{ sub(/s$/, "", $3); t += $3; n++ }
                                                                          END { if (n) printf "%.3f", t / n }')
  if [ -z "$measured" ]; then   # parallel schedule: the last block's elapsed time over the blocks
    measured=$(grep -oE 'block [0-9]+/[0-9]+  elapsed [0-9.]+s' "$work/$name.log" | tail -1 |
               awk '{ split($2, b, "/"); sub(/s$/, "", $4); if (b[2] > 0) printf "%.3f", $4 / b[2] }')
  fi
  ratio=$(awk -v m="$measured" -v p="$predicted" 'BEGIN { if (m > 0 && p > 0) printf "%.2f", m / p }')
  [ -n "$ratio" ] || status=1
  echo "| $name | $ranks | $predicted | ${measured:-no block times in the log} | ${ratio:-n/a} |"
done
exit $status
