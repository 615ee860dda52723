#!/usr/bin/env bash
# Keys that affect only some methods (the `affects` column of `zfold help config`): setting them for another
# method changes nothing, and `zfold sweep` runs the points that differ only in them once.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
run_yaml "$fixtures/stories260k" 4 128 > "$work/run.yaml"
sed -i 's/max_windows: 16/max_windows: 2/' "$work/run.yaml"

# a value other than the default for every key that some method ignores
declare -A other=([damp]=0.5 [damp_retries]=1 [block_size]=32 [act_order]=true [static_groups]=true [alpha]=grid
                  [als_max_iter]=3 [als_tol]=0.01 [refit]=false [refit_zeta]=true [zfold_rounds]=2
                  [optq_fallback]=false [optq_screen]=0 [grid_widen]=layer [grid_widen_sample]=0.5)
"$zfold" help config > "$work/keys.md"
for m in rtn optq zfold; do
  sets=()
  while IFS='|' read -r _ key _ _ _ affects _; do
    key=$(echo "$key" | tr -d ' `'); affects=$(echo "$affects" | xargs)
    [ "$affects" = all ] || [ "$affects" = - ] || [[ ", $affects," == *", $m,"* ]] && continue
    [ -n "${other[$key]:-}" ] || { bad "no test value for $key (affects: $affects)"; continue; }
    sets+=(--set "$key=${other[$key]}")
  done < <(tail -n +3 "$work/keys.md" | sed 's/\\|/\//g')
  [ "$m" = zfold ] || [ ${#sets[@]} -gt 0 ] || bad "$m: no key that leaves it alone"
  "$zfold" quantize "$work/run.yaml" --set method=$m --set output="$work/ref-$m" > "$work/ref-$m.log" 2>&1 \
    || bad "$m: $(tail -2 "$work/ref-$m.log")"
  "$zfold" quantize "$work/run.yaml" --set method=$m --set output="$work/alt-$m" "${sets[@]}" > "$work/alt-$m.log" 2>&1 \
    || bad "$m ${sets[*]}: $(tail -2 "$work/alt-$m.log")"
  "$zfold" compare "$work/ref-$m" "$work/alt-$m" --min-agreement 1 --max-ppl-diff 0 > "$work/cmp-$m" 2>&1 \
    && ok "$m unchanged by ${sets[*]:-(nothing to set)}" || { bad "$m changed by ${sets[*]}"; tail -3 "$work/cmp-$m"; }
done

# method x alpha: rtn and optq once each, Z-FOLD once per alpha
sed -e "s|^method: .*|method: [rtn, optq, zfold]\nalpha: [lsq, grid]|" -e "s|^output: .*|output: $work/sweep|" \
  "$work/run.yaml" > "$work/sweep.yaml"
"$zfold" sweep "$work/sweep.yaml" > "$work/sweep.log" 2>&1 || bad "sweep: $(tail -3 "$work/sweep.log")"
grep -q "4 runs of 6 combinations" "$work/sweep.log" && ok "sweep: 4 runs of 6 combinations" \
  || bad "sweep: $(grep 'combination' "$work/sweep.log")"
runs=$(grep -c "sweep point [0-9]/4 " "$work/sweep.log")
[ "$runs" -eq 4 ] && ok "sweep quantized 4 points" || bad "sweep quantized $runs points"
dirs=$(cd "$work/sweep" && ls -d method-* | tr '\n' ' ')
[ "$dirs" = "method-optq method-rtn method-zfold_alpha-grid method-zfold_alpha-lsq " ] && ok "run directories: $dirs" \
  || bad "run directories: $dirs"
csv=$work/sweep/sweep-summary.csv
[ "$(wc -l < "$csv")" -eq 5 ] && grep -q '^method-rtn,rtn,,' "$csv" && grep -q '^method-zfold_alpha-grid,zfold,grid,' "$csv" \
  && ok "summary: one row per run, alpha empty where it does not apply" || { bad "summary"; cat "$csv"; }
ppl() { awk -F, -v p="$1" '$1 == p { print $4 }' "$csv"; }
[ "$(ppl method-zfold_alpha-lsq)" != "$(ppl method-zfold_alpha-grid)" ] && ok "Z-FOLD's two alphas differ" \
  || bad "Z-FOLD lsq and grid give the same perplexity"
"$zfold" compare "$work/ref-rtn" "$work/sweep/method-rtn" --min-agreement 1 > "$work/cmp-sweep" 2>&1 \
  && ok "the sweep's rtn run has the codes of a plain rtn run" || { bad "sweep rtn"; tail -3 "$work/cmp-sweep"; }
# a second sweep finds every run finished
"$zfold" sweep "$work/sweep.yaml" > "$work/sweep2.log" 2>&1 || bad "sweep again: $(tail -3 "$work/sweep2.log")"
[ "$(grep -c 'finished earlier, skipped' "$work/sweep2.log")" -eq 4 ] && ok "second sweep skipped the 4 runs" \
  || bad "second sweep: $(grep 'sweep point' "$work/sweep2.log")"
finish
