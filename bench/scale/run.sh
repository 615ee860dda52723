#!/usr/bin/env bash
# One run of the real pipeline on a synthetic checkpoint of a config.json's shapes, next to `zfold plan`'s figures:
# peak resident memory of every rank (/usr/bin/time), seconds and bytes communicated per block (the run's log).
# usage: bench/scale/run.sh BUILD_DIR CONFIG.json WORK_DIR RANKS WINDOWS SEQ_LEN [--set KEY=VALUE]...
# The checkpoint (bf16, 2 GB shards) is written once to WORK_DIR/model; the run goes to WORK_DIR/run-RANKS.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
usage="usage: bench/scale/run.sh BUILD_DIR CONFIG.json WORK_DIR RANKS WINDOWS SEQ_LEN [--set KEY=VALUE]..."
build=$(cd "${1:?$usage}" && pwd); config=${2:?$usage}; work=${3:?$usage}; ranks=${4:?$usage}
windows=${5:?$usage}; seq=${6:?$usage}; shift 6
zfold=$build/zfold
mkdir -p "$work"
if [ ! -f "$work/model/config.json" ]; then
  "$zfold" synth "$config" "$work/model" --seed 1 --shard-size 2 --tokens $((windows * seq * 4 + 4096))
fi
threads=$(( $(nproc) / ranks )); [ "$threads" -ge 1 ] || threads=1
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
cat > "$work/job.yaml" <<YAML
model: $work/model
output: $work/run-$ranks
method: zfold
bits: 3
calibration:
  file: $work/model/tokens.bin
  windows: $windows
  seq_len: $seq
eval:
  files: [$work/model/tokens.bin]
  max_windows: $ranks
  fp: false
YAML
rm -rf "$work/run-$ranks"
"$zfold" plan "$work/job.yaml" --ranks "$ranks" --memory-only "$@" > "$work/plan-$ranks.md"
launch=(); [ "$ranks" -gt 1 ] && launch=(mpirun -np "$ranks")
"${launch[@]}" /usr/bin/time -f "peak resident %M KiB" "$zfold" quantize "$work/job.yaml" "$@" > "$work/run-$ranks.log" 2>&1
echo "## $(basename "$config" .json): $ranks rank(s), $windows x $seq calibration tokens"
cat "$work/plan-$ranks.md"
echo
echo "measured:"
grep -E '^\[zfold\] block|peak resident' "$work/run-$ranks.log" | sed 's/^\[zfold\] //'
awk '/peak resident/ { if ($3 > m) m = $3 } END { printf "largest rank peak resident: %.3f GiB\n", m / 1048576 }' \
  "$work/run-$ranks.log"
