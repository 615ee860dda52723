# Shared set-up of the MPI tests: a small stories260K run that each test varies (sourced, not a test itself).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
run_yaml "$fixtures/stories260k" "${ZF_TEST_WINDOWS:-24}" 512 > "$work/run.yaml"
# run NP DEST [extra args]: quantize into $work/out with NP ranks, then move the run to DEST
run() {
  local np=$1 dest=$2; shift 2
  rm -rf "$work/out"
  if [ "$np" -eq 0 ]; then "$zfold" quantize "$work/run.yaml" "$@" > "$dest.log" 2>&1
  else mpirun -np "$np" "$zfold" quantize "$work/run.yaml" "$@" > "$dest.log" 2>&1; fi
  local rc=$?
  mv "$work/out" "$dest"
  return $rc
}
# same_as_ref REF: every block shard and unquantized.h5 of $work/out equal REF's byte for byte (lists those that differ)
same_as_ref() {
  local ref=$1 n=0
  for f in "$ref"/blocks/*.h5 "$ref/unquantized.h5"; do
    cmp -s "$f" "$work/out/${f#$ref/}" || { echo "  differs: ${f#$ref/}"; n=$((n + 1)); }
  done
  [ "$n" -eq 0 ]
}
