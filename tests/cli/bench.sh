#!/usr/bin/env bash
# zfold_bench on its smallest layer: the JSON it writes parses, every method has its figures, Z-FOLD's time split
# (ALS, factor, loops, refits, fallback, ΔL) is non-negative and within its total, its ΔL is below OPTQ's, and no
# rate claims flops that were never done (above 2x SGEMM, or Z-FOLD's core above OPTQ's: its ALS has no GEMM).
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
bench=$(dirname "$zfold")/zfold_bench
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

if "$bench" --sizes 768 --methods rtn,optq,zfold --json "$work/bench.json" > "$work/bench.log" 2>&1; then
  ok "zfold_bench --sizes 768 ran"
else
  bad "zfold_bench failed: $(tail -3 "$work/bench.log")"
fi
python3 - "$work/bench.json" <<'PY' && ok "bench JSON: figures present, split within the total, rates below 2x SGEMM" \
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
for r in (z, o):
    # the column loop's rate counts 2*out*in^2 (twice its multiply-adds), so up to 2x SGEMM is possible there only
    assert r["core_gflops"] < 2.0 * peak, (r["method"], r["core_gflops"], peak)
# the default ALS (alpha diag) runs no GEMM: Z-FOLD's core does OPTQ's flops in more time
assert z["core_gflops"] <= 1.2 * o["core_gflops"], (z["core_gflops"], o["core_gflops"])
PY
finish
