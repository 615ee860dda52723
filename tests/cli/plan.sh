#!/usr/bin/env bash
# `zfold plan` on a 7B-shaped LLaMA config.json (no weights needed): memory rows against the cost model worked
# out here, seconds = GFLOP / rate on every time row, the memory warnings and their exit codes.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
mkdir "$work/llama-7b"
cat > "$work/llama-7b/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
 "num_attention_heads": 32, "num_key_value_heads": 32, "num_hidden_layers": 32, "vocab_size": 32000,
 "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false}
JSON
run_yaml "$work/llama-7b" 128 2048 optq > "$work/plan.yaml"
row() { grep -F "| $1" "$work/plan.out" | head -1 | awk -F'|' '{gsub(/[ *]/, "", $3); print $3}'; }

"$zfold" plan "$work/plan.yaml" --ranks 4 --memory 64 > "$work/plan.out" 2>&1
rc=$?
[ "$rc" -eq 0 ] && ok "plan, 4 ranks, 64 GiB each: exit 0" || { bad "plan exit $rc"; cat "$work/plan.out"; }
# per rank: 32 windows x 2048 tokens; fp64 Hessians of d_in 4096 (q/k/v, o, gate/up) and 11008 (down)
want_hess=$(awk 'BEGIN { printf "%.3f", (3 * 4096^2 + 11008^2) * 8 / 2^30 }')
want_act=$(awk 'BEGIN { printf "%.3f", (2 * 32 * 2048 * 4096 * 4 + 32 * 2048 * 4) / 2^30 }')
[ "$(row 'Hessian accumulators of one capture pass (fp64)')" = "$want_hess" ] && ok "Hessian accumulators $want_hess GiB" \
  || bad "Hessian accumulators: $(row 'Hessian accumulators of one capture pass (fp64)'), expected $want_hess"
[ "$(row 'calibration activations')" = "$want_act" ] && ok "calibration activations $want_act GiB" \
  || bad "calibration activations: $(row 'calibration activations'), expected $want_act"
# bf16 activations: 2 bytes per value and an fp32 chunk of 8 windows (256 MiB of 2048 x 4096 fp32 windows)
"$zfold" plan "$work/plan.yaml" --ranks 4 --memory 64 --memory-only --set calibration.activations=bf16 \
  > "$work/bf16.out" 2>&1
want_b16=$(awk 'BEGIN { printf "%.3f", (32 * 2048 * 4096 * 2 + 8 * 2048 * 4096 * 4 + 32 * 2048 * 4) / 2^30 }')
got_b16=$(grep -F '| calibration activations' "$work/bf16.out" | awk -F'|' '{gsub(/[ *]/, "", $3); print $3}')
[ "$got_b16" = "$want_b16" ] && ok "bf16 calibration activations $want_b16 GiB" \
  || bad "bf16 calibration activations: $got_b16, expected $want_b16"
want_hflops=$(awk 'BEGIN { printf "%.2f", 32 * 2048 * (3 * 4096^2 + 11008^2) / 1e9 }')
[ "$(row 'Hessians T·Σd_in²')" = "$want_hflops" ] && ok "Hessian GFLOP $want_hflops" \
  || bad "Hessian GFLOP: $(row 'Hessians T·Σd_in²'), expected $want_hflops"
# 4 ranks, one group each: the busiest owns down_proj [4096 x 11008] (OPTQ: 2/3·in³ + 2·rows·in²)
want_qflops=$(awk 'BEGIN { printf "%.2f", (11008^3 * 2 / 3 + 2 * 4096 * 11008^2) / 1e9 }')
[ "$(row 'OPTQ, busiest rank')" = "$want_qflops" ] && ok "busiest rank's OPTQ GFLOP $want_qflops" \
  || bad "busiest rank's OPTQ GFLOP: $(row 'OPTQ, busiest rank'), expected $want_qflops"
# the peak is the largest phase total; 4 ranks move 8·Σd_in² of Hessians and 4-bit codes per block
awk -F'|' '/phase totals/ { n = split($2, w, /[ ,]+/); for (i = 1; i <= n; i++) if (w[i] ~ /^[0-9.]+$/ && w[i] + 0 > m) m = w[i] + 0 }
  /\*\*peak/ { gsub(/[ *]/, "", $3); p = $3 + 0 } END { exit !(m > 0 && sqrt((p - m)^2) <= 0.006) }' "$work/plan.out" \
  && ok "the peak is the largest phase" || { bad "peak is not the largest phase"; grep -E 'phase|peak' "$work/plan.out"; }
grep -qE '^traffic per rank \(the busiest\): [0-9.]+ GB per block' "$work/plan.out" && ok "traffic per block printed" \
  || bad "no traffic line at 4 ranks"
# every time row: seconds = GFLOP / (GFLOP/s), to the printed digits
n=$(grep -cE '^\| (forward x|Hessians|OPTQ)' "$work/plan.out")
awk -F'|' '/^\| (forward x|Hessians|OPTQ)/ {
    g = $3 + 0; r = $4 + 0; s = $5 + 0
    if (r <= 0 || s <= 0) { print "  no rate or time: " $0; bad++; next }
    # the rate is printed to 0.1 GFLOP/s and the seconds to 1 ms
    if (sqrt((g / r - s)^2) > 0.0006 + s * (0.06 / r + 1e-3)) { print "  " $0 ": " g / r " s expected"; bad++ }
  } END { exit bad > 0 }' "$work/plan.out" && [ "$n" -eq 3 ] && ok "3 time rows, seconds = GFLOP / rate" \
  || bad "time rows ($n) inconsistent"
grep -qE 'measured on (this CPU|cuda:)' "$work/plan.out" && ok "rates name where they were measured" \
  || bad "time table does not say where its rates come from"

# the parallel schedule forwards once (the full-precision pass): half the sequential schedule's forward flops
"$zfold" plan "$work/plan.yaml" --ranks 4 --memory 64 --set schedule=parallel > "$work/par.out" 2>&1
seq_fwd=$(grep -F '| forward x2' "$work/plan.out" | awk -F'|' '{print $3 + 0}')
par_fwd=$(grep -F '| forward x1' "$work/par.out" | awk -F'|' '{print $3 + 0}')
awk -v a="$seq_fwd" -v b="$par_fwd" 'BEGIN { exit !(a > 0 && sqrt((a - 2 * b)^2) <= 1e-5 * a) }' \
  && ok "parallel schedule: forward x1, $par_fwd GFLOP (sequential x2: $seq_fwd)" \
  || bad "parallel schedule forward flops '$par_fwd', sequential '$seq_fwd'"
"$zfold" plan "$work/plan.yaml" --ranks 4 --memory 1 --memory-only > "$work/small.out" 2>&1
rc=$?
[ "$rc" -eq 1 ] && grep -q "WARNING: a rank needs .* GiB but has 1.00 GiB" "$work/small.out" \
  && ok "1 GiB per rank: warning, exit 1" || bad "1 GiB per rank: exit $rc, $(tail -1 "$work/small.out")"
grep -q 'time per block' "$work/small.out" && bad "--memory-only printed a time table" || ok "--memory-only: no time table"

"$zfold" plan "$work/plan.yaml" --ranks 4 --memory 64 --memory-only --set backend=cuda --gpu-memory 2 > "$work/gpu.out" 2>&1
rc=$?
peak=$(grep -F '| **peak**' "$work/gpu.out" | awk -F'|' '{gsub(/[ *]/, "", $3); print $3}')
# the quantization total is the sum of the rows above it, and the peak the larger of the two phases
awk -F'|' '/GPU memory per rank/ { on = 1; next }
  on && /^\| (CUDA context|one block|Hessian|largest group)/ { sum += $3 }
  on && /quantization total/ { q = $3 + 0 } on && /evaluation total/ { e = $3 + 0 } on && /\*\*peak/ { gsub(/[ *]/, "", $3); p = $3 + 0 }
  END { m = q > e ? q : e; exit !(q > 0 && sqrt((sum - q)^2) <= 0.003 && sqrt((p - m)^2) <= 0.0005) }' "$work/gpu.out" \
  && ok "GPU memory: the quantization total adds up, the peak is the larger phase" \
  || { bad "GPU memory rows do not add up"; sed -n '/GPU memory per rank/,/peak/p' "$work/gpu.out"; }
# near VALUE TEXT: TEXT's first number is VALUE to the 2 decimals it is printed with
near() { awk -v v="$1" -v t="$2" 'BEGIN { match(t, /[0-9]+\.[0-9]+/); x = substr(t, RSTART, RLENGTH) + 0
                                          exit !(RLENGTH > 0 && sqrt((x - v)^2) <= 0.0051) }'; }
warn=$(grep -o "WARNING: a rank needs [0-9.]* GiB of GPU memory but --gpu-memory has 2.00 GiB" "$work/gpu.out")
[ "$rc" -eq 1 ] && near "$peak" "$warn" && ok "backend cuda, 2 GiB GPU: peak $peak GiB, warning, exit 1" \
  || bad "backend cuda, 2 GiB GPU: exit $rc, peak '$peak': $(grep -i 'gpu memory' "$work/gpu.out" | tail -1)"
"$zfold" plan "$work/plan.yaml" --ranks 4 --memory 64 --set backend=cuda --gpu-memory 80 > "$work/gpu80.out" 2>&1
rc=$?
[ "$rc" -eq 0 ] && near "$peak" "$(grep -o 'GPU memory OK: [0-9.]* GiB needed of 80.00 GiB' "$work/gpu80.out")" \
  && ok "backend cuda, 80 GiB GPU: fits, exit 0" || bad "backend cuda, 80 GiB GPU: exit $rc"
if ! grep -q 'measured on cuda:' "$work/gpu80.out"; then
  grep -q "backend cuda, but no GPU here: the times below use this CPU's rates" "$work/gpu80.out" \
    && ok "no GPU here: the time table says it uses CPU rates" || bad "CPU rates for backend cuda not flagged"
fi
finish
