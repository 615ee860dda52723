#!/usr/bin/env bash
# Prints a sha256 per HDF5 file of a run directory over its datasets and attributes, the /provenance group
# (commit, compiler, times) left out: two runs of the same numbers give the same digests whatever built them.
# usage: scripts/shard-digest.sh RUN_DIR
set -euo pipefail
dir=${1:?usage: scripts/shard-digest.sh RUN_DIR}
cd "$dir"
for f in blocks/*.h5 unquantized.h5; do
  [ -f "$f" ] || continue
  digest=$(h5dump "$f" | tail -n +2 | awk '
    skip == 0 && $0 ~ /^ *GROUP "provenance" \{$/ { skip = 1; match($0, /^ */); ind = RLENGTH; next }
    skip == 1 { if ($0 ~ /^ *\}$/) { match($0, /^ */); if (RLENGTH == ind) skip = 0 } next }
    { print }' | sha256sum | cut -c1-64)
  printf '%s  %s\n' "$digest" "$f"
done
