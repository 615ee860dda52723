#!/usr/bin/env bash
# zfold_bench on its smallest layer: the JSON it writes parses, every method has its figures, Z-FOLD's time split
# (ALS, factor, loops, refits, fallback, ΔL) is non-negative and within its total, its ΔL is below OPTQ's, and its
# flop count is OPTQ's (the default ALS runs no GEMM; counting the lsq ALS's GEMMs claimed 5.7x the SGEMM rate).
# With --members 3 (the layer as a Q/K/V-like group) OPTQ's and Z-FOLD's summed ΔL are the single layer's: rows are
# quantized alike, and the members' closed-form ζ-refit changes add up to the layer's.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
bench=$(dirname "$zfold")/zfold_bench
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

if "$bench" --sizes 768 --methods rtn,optq,zfold --json "$work/bench.json" > "$work/bench.log" 2>&1; then
  ok "zfold_bench --sizes 768 ran"
else
  bad "zfold_bench failed: $(tail -3 "$work/bench.log")"
fi
python3 - "$work/bench.json" <<'PY' && ok "bench JSON: figures present, split within the total, flops counted as run" \
  || bad "bench JSON checks (above)"
import json, sys
b = json.load(open(sys.argv[1]))
peak = b["sgemm_gflops"]
res = {r["method"]: r for r in b["results"]}
assert set(res) == {"rtn", "optq", "zfold"}, res.keys()
z, o = res["zfold"], res["optq"]
parts = [z[k] for k in ("als_s", "factor_s", "loop_s", "refit_s", "fallback_s", "stats_s")]
assert all(p >= 0 for p in parts), parts
assert sum(parts) <= z["total_s"] * 1.001 + 1e-3, (parts, z["total_s"])
assert z["refit_s"] > 0 and z["als_s"] > 0, z
assert z["dl"] < o["dl"] < res["rtn"]["dl"], (z["dl"], o["dl"], res["rtn"]["dl"])
# the default ALS (alpha diag) runs no GEMM: Z-FOLD's core counts OPTQ's flops, 2*out*in^2 + in^3, and no more
n = 768.0
assert abs(o["core_flops"] - (2 * n ** 3 + n ** 3)) <= 1e-5 * o["core_flops"], o["core_flops"]  # %.6g in the JSON
assert z["core_flops"] == o["core_flops"], (z["core_flops"], o["core_flops"])
assert peak > 0 and all(r["core_gflops"] > 0 for r in (z, o)), (peak, z, o)
PY

if "$bench" --sizes 768 --methods optq,zfold --members 3 --json "$work/bench3.json" > "$work/bench3.log" 2>&1; then
  ok "zfold_bench --members 3 ran"
else
  bad "zfold_bench --members 3 failed: $(tail -3 "$work/bench3.log")"
fi
python3 - "$work/bench.json" "$work/bench3.json" <<'PY' && ok "bench --members 3: the group's ΔL is the layer's" \
  || bad "bench --members 3 checks (above)"
import json, sys
one, three = (json.load(open(f)) for f in sys.argv[1:3])
assert one["members"] == 1 and three["members"] == 3, (one["members"], three["members"])
a = {r["method"]: r["dl"] for r in one["results"]}
b = {r["method"]: r["dl"] for r in three["results"]}
for m in ("optq", "zfold"):
    assert abs(a[m] - b[m]) <= 1e-4 * a[m], (m, a[m], b[m])
PY
finish
