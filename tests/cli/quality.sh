#!/usr/bin/env bash
# zfold_quality on stories260k's cached Hessians: each method's ΔL per layer group, and scored again with a held-out
# Hessian cache — here the same one, so the held-out figure (the codes dequantized with ζ, scales and groups, then
# ΔW H ΔWᵀ) must equal the method's own ΔL, per channel and with groups and act order; Z-FOLD below OPTQ below RTN.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
quality=$(dirname "$zfold")/zfold_quality
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

run_yaml "$fixtures/stories260k" 64 512 rtn > "$work/run.yaml"
"$zfold" quantize "$work/run.yaml" --set schedule=parallel --set calibration.cache="$work/hc" \
  --set eval.max_windows=1 --set eval.fp=false > "$work/hc.log" 2>&1 \
  || bad "Hessian cache run failed: $(tail -3 "$work/hc.log")"
key=$(ls -d "$work"/hc/*/ 2>/dev/null | head -1)
[ -n "$key" ] && ok "Hessian cache written" || bad "no Hessian cache folder under $work/hc"

for extra in "" "--set group_size=32 --set act_order=true"; do
  # shellcheck disable=SC2086
  if "$quality" --model "$fixtures/stories260k" --hessians "$key" --holdout "$key" --bits 2,4 --no-paper $extra \
    --json "$work/q.json" > "$work/q.log" 2>&1; then
    ok "zfold_quality ${extra:-per channel}"
  else
    bad "zfold_quality ${extra:-per channel}: $(tail -3 "$work/q.log")"
    continue
  fi
  python3 - "$work/q.json" <<'PY' && ok "held-out ΔL equals ΔL on the same Hessian; zfold < optq < rtn (${extra:-per channel})" \
    || bad "zfold_quality checks (${extra:-per channel}, above)"
import json, sys
d = json.load(open(sys.argv[1]))
cases = d["cases"]
assert len(cases) == 5 * 4 * 2, len(cases)  # 5 blocks x 4 groups x 2 bit widths
for c in cases:
    for v in ("rtn", "optq", "zfold"):
        dl, ho = c["dl_" + v], c["ho_" + v]
        assert abs(ho - dl) <= 1e-3 * dl + 1e-9, (c["case"], c["bits"], v, dl, ho)
    assert c["dl_zfold"] <= c["dl_optq"] * (1 + 1e-6) and c["dl_optq"] < c["dl_rtn"], c
assert d["holdout_above_optq"] == d["above_optq"] == 0, d
PY
done
finish
