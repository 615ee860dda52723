#!/usr/bin/env bash
# Regenerates docs/results.md: per-layer ΔL of RTN, OPTQ, Z-FOLD and the paper's Z-FOLD on the fixtures' own
# Hessians (zfold_quality), Z-FOLD/OPTQ times at real widths beside the SGEMM rate (zfold_bench), and perplexity of
# the four × 2/3/4 bits on every fixture, per channel and (RTN, OPTQ, Z-FOLD) with groups of 128.
# usage: scripts/results.sh [BUILD_DIR, default build] [max_windows per eval file, default 256; 0 = every window]
# Finished runs are kept under runs/results and not redone while the binaries that made them are the same; when
# they differ, the old measurements move aside to runs/results.stale-DATE and all are redone (ZF_RESULTS_KEEP=1
# keeps them: only where the change is known not to touch them).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}
maxw=${2:-256}
out=runs/results
# measured with what the sources are now: a binary left from before an edit would measure the old code
cmake --build "$bin" --target zfold zfold_quality zfold_bench > /dev/null
stamp=$(cd "$bin" && sha256sum zfold zfold_quality zfold_bench)
if [ -d "$out" ] && [ "$(cat "$out/binaries.sha256" 2>/dev/null)" != "$stamp" ] && [ "${ZF_RESULTS_KEEP:-0}" != 1 ]; then
  stale="$out.stale-$(date +%Y%m%d-%H%M%S)"
  mv "$out" "$stale"
  echo "the binaries changed since the kept measurements: moved to $stale, measuring again"
fi
mkdir -p "$out"
echo "$stamp" > "$out/binaries.sha256"
fixtures="stories260k llama-mini opt-mini"
# the paper's code: the Hessian-scored α search every ALS iteration, OPTQ on its grid, nothing after
paper="--set alpha=grid --set grid_widen=off --set refit=false --set refit_zeta=false --set zfold_rounds=1 --set optq_fallback=false --set als_tol=0"
declare -A variant=([rtn]="--set method=rtn" [optq]="--set method=optq" [zfold]="--set method=zfold"
                    [zfold-paper]="--set method=zfold $paper" [rtn-g128]="--set method=rtn --set group_size=128"
                    [optq-g128]="--set method=optq --set group_size=128"
                    [zfold-g128]="--set method=zfold --set group_size=128")

for f in $fixtures; do
  # every block's full-precision Hessians, for the per-layer comparison
  if ! ls "$out/hc-$f"/*/ >/dev/null 2>&1; then
    "$bin/zfold" quantize configs/$f.yaml --set output="$out/hc-run-$f" --set schedule=parallel \
      --set calibration.cache="$out/hc-$f" --set method=rtn --set eval.max_windows=1 --set eval.fp=false \
      > "$out/hc-$f.log" 2>&1 || { echo "failed: Hessians of $f (see $out/hc-$f.log)"; exit 1; }
  fi
  # the same from other text (ptb-valid), to score the per-layer results out of sample
  if ! ls "$out/hc-ptb-$f"/*/ >/dev/null 2>&1; then
    "$bin/zfold" quantize configs/$f.yaml --set output="$out/hc-run-ptb-$f" --set schedule=parallel \
      --set calibration.cache="$out/hc-ptb-$f" --set calibration.file=../shared/fixtures/data/ptb-valid.tok512.bin \
      --set method=rtn --set eval.max_windows=1 --set eval.fp=false > "$out/hc-ptb-$f.log" 2>&1 \
      || { echo "failed: ptb Hessians of $f (see $out/hc-ptb-$f.log)"; exit 1; }
  fi
  for v in rtn optq zfold zfold-paper rtn-g128 optq-g128 zfold-g128; do
    for bits in 2 3 4; do
      dir=$out/$f-$v-w$bits
      [ -f "$dir/report.json" ] && continue   # finished
      fp=false
      [ "$v" = rtn ] && [ "$bits" = 2 ] && fp=true   # the FP perplexity once per fixture
      # shellcheck disable=SC2086
      "$bin/zfold" quantize configs/$f.yaml --set output="$dir" ${variant[$v]} --set bits=$bits \
        --set delta_loss_rtn=true --set eval.max_windows="$maxw" --set eval.fp=$fp > "$dir.log" 2>&1 \
        || { echo "failed: $dir (see $dir.log)"; exit 1; }
      echo "done $f $v w$bits"
    done
  done
done

qargs=()
for f in $fixtures; do qargs+=(--model "../shared/fixtures/$f" --hessians "$(ls -d "$out/hc-$f"/*/ | head -1)"); done
# each measurement once: delete its JSON to measure again
[ -f "$out/quality.json" ] || "$bin/zfold_quality" "${qargs[@]}" --synthetic 256x256 --json "$out/quality.json" \
  > "$out/quality.log"
[ -f "$out/quality-g128.json" ] || "$bin/zfold_quality" "${qargs[@]}" --synthetic 256x256 --set group_size=128 \
  --json "$out/quality-g128.json" > "$out/quality-g128.log"
[ -f "$out/quality-r2.json" ] || "$bin/zfold_quality" "${qargs[@]}" --synthetic 256x256 --set zfold_rounds=2 --no-paper \
  --json "$out/quality-r2.json" > "$out/quality-r2.log"
[ -f "$out/quality-layer.json" ] || "$bin/zfold_quality" "${qargs[@]}" --synthetic 256x256 --set grid_widen=layer \
  --no-paper --json "$out/quality-layer.json" > "$out/quality-layer.log"
[ -f "$out/quality-zeta.json" ] || "$bin/zfold_quality" "${qargs[@]}" --synthetic 256x256 --set refit_zeta=true \
  --no-paper --json "$out/quality-zeta.json" > "$out/quality-zeta.log"
hoargs=()
for f in $fixtures; do
  hoargs+=(--model "../shared/fixtures/$f" --hessians "$(ls -d "$out/hc-$f"/*/ | head -1)"
           --holdout "$(ls -d "$out/hc-ptb-$f"/*/ | head -1)")
done
[ -f "$out/quality-holdout.json" ] || "$bin/zfold_quality" "${hoargs[@]}" --no-paper \
  --json "$out/quality-holdout.json" > "$out/quality-holdout.log"
[ -f "$out/bench.json" ] || "$bin/zfold_bench" --sizes 4096,11008x4096,4096x11008 --methods optq,zfold \
  --delta-loss-rtn 0 --repeat 3 --json "$out/bench.json" > "$out/bench.log"
[ -f "$out/bench-group.json" ] || "$bin/zfold_bench" --sizes 4096,11008x4096 --methods optq,zfold --members 2 \
  --delta-loss-rtn 0 --repeat 3 --json "$out/bench-group.json" > "$out/bench-group.log"
[ -f "$out/bench-g128.json" ] || "$bin/zfold_bench" --sizes 4096,11008x4096 --methods optq,zfold --group-size 128 \
  --delta-loss-rtn 1 --repeat 3 --json "$out/bench-g128.json" > "$out/bench-g128.log"

python3 - "$out" "$maxw" <<'PY'
import json, math, os, sys, platform, subprocess
out, maxw = sys.argv[1], int(sys.argv[2])
cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
machine = "%s (%d cores)" % (cpu or platform.machine(), os.cpu_count())
q = json.load(open(os.path.join(out, "quality.json")))
b = json.load(open(os.path.join(out, "bench.json")))
L = ["# Results", "",
     "Generated by `scripts/results.sh` on %s. Z-FOLD is the default configuration (`alpha: diag`," % machine,
     "`grid_widen: row`, `refit`, no `refit_zeta`, `zfold_rounds: 1`, `optq_fallback`, `als_tol: 0.001`); *paper* is the",
     "published code's algorithm (`alpha: grid`, no widening, refits or fallback, every ALS iteration until ΔL rises).",
     "All grids asymmetric; damp 0.01.", "",
     "## Per-layer ΔL", "",
     "ΔL = tr(ΔW H ΔWᵀ) with the undamped H of 128 calibration windows (each config's calibration file), summed over",
     "the members of each layer group (qkv = q, k, v stacked); `synthetic` is a seeded 256 × 256 layer whose inputs",
     "have 8 outlier channels. Times are seconds on one core's share of this machine (`zfold_quality`).", "",
     "Over %d cases: Z-FOLD / paper geometric mean **%.4f** (worst %.4f, %d cases above the paper), Z-FOLD / OPTQ"
     % (len(q["cases"]), q["geomean_zfold_over_grid"], q["worst_zfold_over_grid"], q["above_grid"]),
     "%.4f (%d above OPTQ)." % (q["geomean_zfold_over_optq"], q["above_optq"]), ""]
paper = {(c["case"], c["bits"]): c["dl_zfold-grid"] for c in q["cases"]}
for name, what in (("r2", "`zfold_rounds: 2` (a second OPTQ run on the refitted grid, and the refits again; about 1.5x "
                          "more time)"),
                   ("zeta", "`refit_zeta: true` (ζ refitted after α: W·H and one SYRK more, about 1.5x OPTQ's time)"),
                   ("layer", "`grid_widen: layer` (one widening factor for the layer, chosen on a sample of its rows, "
                             "then OPTQ on all rows)")):
    q2 = json.load(open(os.path.join(out, "quality-%s.json" % name)))
    r2 = [c["dl_zfold"] / paper[(c["case"], c["bits"])] for c in q2["cases"] if (c["case"], c["bits"]) in paper]
    L += ["With %s:" % what,
          "Z-FOLD / paper geometric mean **%.4f** (worst %.4f, %d cases above the paper), Z-FOLD / OPTQ %.4f (%d above "
          "OPTQ)." % (math.exp(sum(map(math.log, r2)) / len(r2)), max(r2), sum(x > 1 for x in r2),
                      q2["geomean_zfold_over_optq"], q2["above_optq"]), ""]
qh = json.load(open(os.path.join(out, "quality-holdout.json")))
gm = lambda v: math.exp(sum(map(math.log, v)) / len(v))
hb = {b: [c for c in qh["cases"] if c["bits"] == b] for b in (2, 3, 4)}
L += ["Out of sample: the same quantized layers of the three fixtures scored with Hessians of other text (128 windows",
      "of ptb-valid; `zfold_quality --holdout`): Z-FOLD / OPTQ geometric mean **%.4f** (%d of %d cases above OPTQ),"
      % (qh["holdout_geomean_zfold_over_optq"], qh["holdout_above_optq"], len(qh["cases"])),
      "where on the calibration Hessians it is %.4f; per bit width %s." % (
          gm([c["dl_zfold"] / c["dl_optq"] for c in qh["cases"]]),
          ", ".join("%d bits %.4f (in sample %.4f)" % (b, gm([c["ho_zfold"] / c["ho_optq"] for c in hb[b]]),
                                                      gm([c["dl_zfold"] / c["dl_optq"] for c in hb[b]])) for b in hb)),
      ""]
L += [
      "| layer | bits | RTN | OPTQ | Z-FOLD | paper | Z-FOLD / paper | Z-FOLD / OPTQ | t OPTQ | t Z-FOLD | t paper |",
      "|---|---|---|---|---|---|---|---|---|---|---|"]
for c in q["cases"]:
    L.append("| %s | %d | %.5g | %.5g | %.5g | %.5g | %.4f | %.4f | %.3f | %.3f | %.3f |" % (
        c["case"], c["bits"], c["dl_rtn"], c["dl_optq"], c["dl_zfold"], c["dl_zfold-grid"],
        c["dl_zfold"] / c["dl_zfold-grid"], c["dl_zfold"] / c["dl_optq"], c["t_optq"], c["t_zfold"], c["t_zfold-grid"]))
qg = json.load(open(os.path.join(out, "quality-g128.json")))
L += ["", "### Groups of 128", "",
      "The same layers with `group_size: 128` (α and zero per row and group; the paper's code has no group path):",
      "over %d cases Z-FOLD / group-wise OPTQ geometric mean **%.4f** (%d above OPTQ)."
      % (len(qg["cases"]), qg["geomean_zfold_over_optq"], qg["above_optq"]), "",
      "| layer | bits | RTN | OPTQ | Z-FOLD | Z-FOLD / OPTQ | t OPTQ | t Z-FOLD |", "|---|---|---|---|---|---|---|---|"]
for c in qg["cases"]:
    L.append("| %s | %d | %.5g | %.5g | %.5g | %.4f | %.3f | %.3f |" % (c["case"], c["bits"], c["dl_rtn"], c["dl_optq"],
             c["dl_zfold"], c["dl_zfold"] / c["dl_optq"], c["t_optq"], c["t_zfold"]))
L += ["", "## Time at real widths", "",
      "`zfold_bench --sizes 4096,11008x4096,4096x11008 --methods optq,zfold --repeat 3` (%d-bit, H from %d tokens): the"
      % (b["bits"], b["tokens"]),
      "fastest of %d runs of each method, total seconds per layer including ΔL; SGEMM %.1f GFLOP/s at the start of the"
      " run and %.1f at the end. Z-FOLD's split: the ALS, OPTQ's factor (shared by every OPTQ run on the layer), the"
      " column loops (the widening's trials, each over every row, whose best per row is kept; the fallback's plain"
      " OPTQ), the refits (the weights put in the factor's basis once, α and zero per row), the fallback's own work,"
      " and the rest (grids, row sums, ΔL bookkeeping)."
      % (b.get("repeat", 1), b["sgemm_gflops"], b["sgemm_gflops_end"]), "",
      "| layer (out × in) | OPTQ (s) | Z-FOLD (s) | Z-FOLD / OPTQ | ALS | factor | loops | refits | fallback | rest |"
      " ALS iterations |", "|---|---|---|---|---|---|---|---|---|---|---|"]
def by_layer(bench):
    """[(layer, OPTQ's result, Z-FOLD's result)] of a zfold_bench JSON, in its order"""
    res = {}
    for r in bench["results"]:
        res.setdefault(r["layer"], {})[r["method"]] = r
    return [(layer, m["optq"], m["zfold"]) for layer, m in res.items()]
for layer, o, z in by_layer(b):
    rest = z["total_s"] - sum(z[k] for k in ("als_s", "factor_s", "loop_s", "refit_s", "fallback_s", "stats_s"))
    L.append("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %d |" % (layer, o["total_s"],
             z["total_s"], z["total_s"] / o["total_s"], z["als_s"], z["factor_s"], z["loop_s"], z["refit_s"],
             z["fallback_s"], rest, z["als_iters"]))
bg = json.load(open(os.path.join(out, "bench-group.json")))
L += ["", "The same layers quantized as a group of %d layers sharing their input (`--members %d`, rows split evenly, as"
      " Q/K/V or gate/up are; each member's ΔL its own), SGEMM %.1f GFLOP/s at the start and %.1f at the end:" % (
      bg["members"], bg["members"], bg["sgemm_gflops"], bg["sgemm_gflops_end"]), "",
      "| layer (out × in) | members | OPTQ (s) | Z-FOLD (s) | Z-FOLD / OPTQ | refits (s) |", "|---|---|---|---|---|---|"]
for layer, o, z in by_layer(bg):
    L.append("| %s | %d | %.2f | %.2f | %.2f | %.2f |" % (layer, bg["members"], o["total_s"], z["total_s"],
             z["total_s"] / o["total_s"], z["refit_s"]))
b128 = json.load(open(os.path.join(out, "bench-g128.json")))
L += ["", "With `--group-size 128` (α and zero per row and group; each method against group-wise OPTQ, times without the"
      " ΔL figures, which here include RTN's by one more GEMM), SGEMM %.1f GFLOP/s at the start and %.1f at the end:" % (
      b128["sgemm_gflops"], b128["sgemm_gflops_end"]), "",
      "| layer (out × in) | OPTQ (s) | Z-FOLD (s) | Z-FOLD / OPTQ | refits (s) | ΔL / ΔL RTN: OPTQ | Z-FOLD |",
      "|---|---|---|---|---|---|---|"]
for layer, o, z in by_layer(b128):
    to, tz = o["total_s"] - o["stats_s"], z["total_s"] - z["stats_s"]
    L.append("| %s | %.2f | %.2f | %.2f | %.2f | %.4f | %.4f |" % (layer, to, tz, tz / to, z["refit_s"],
             o["dl"] / o["dl_rtn"], z["dl"] / z["dl_rtn"]))
L += ["", "## Perplexity", "",
      "GPTQ protocol, folded models, 128 calibration windows (seed 0); %s. `g128`: groups of 128 input columns"
      % ("every window of each eval file" if maxw == 0 else "the first %d windows of each eval file" % maxw),
      "(the paper's Z-FOLD has none). ΔL is summed over every layer (after / before = min-max RTN).", ""]
order = ["rtn", "optq", "zfold", "zfold-paper", "rtn-g128", "optq-g128", "zfold-g128"]
for f in ["stories260k", "llama-mini", "opt-mini"]:
    runs, fp, files = [], {}, None
    for v in order:
        for bits in (2, 3, 4):
            p = os.path.join(out, "%s-%s-w%d" % (f, v, bits), "report.json")
            if not os.path.isfile(p):
                continue
            r = json.load(open(p))
            files = files or [os.path.basename(e["file"]) for e in r["eval"]]
            for e in r["eval"]:
                if e.get("ppl_fp"):
                    fp[os.path.basename(e["file"])] = e["ppl_fp"]
            runs.append((bits, order.index(v), v, r))
    if not runs:
        continue
    runs.sort(key=lambda t: (t[0], t[1]))
    L += ["### %s" % f, "", "| method | bits | " + " | ".join(files) + " | ΔL after / before | quantize (s) |",
          "|---|---|" + "---|" * len(files) + "---|---|",
          "| FP32 | 32 | " + " | ".join("%.3f" % fp.get(x, float("nan")) for x in files) + " | | |"]
    for bits, _, v, r in runs:
        ppl = {os.path.basename(e["file"]): e["ppl"] for e in r["eval"]}
        before = r.get("delta_loss_before")
        L.append("| %s | %d | %s | %.4g / %s | %.1f |" % (v, bits, " | ".join("%.3f" % ppl[x] for x in files),
                 r["delta_loss_after"], "%.4g" % before if before else "–", r["quantize_seconds"]))
    L.append("")
open("docs/results.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
