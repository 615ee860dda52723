#!/usr/bin/env bash
# 1, 2, 3 and 4 ranks: repeated runs are byte-identical; other rank counts agree on >= 99.9 % of codes, ppl within 0.1 %;
# 6 ranks split the groups' rows across teams (every layer's ΔL as one process's); stored inputs reduced in panels give the
# sums' Hessians.
source "$(dirname "$0")/common.sh"
set +e
run 0 "$work/single" || bad "single process run (see $work/single.log)"
for np in 1 2 3 4; do
  if run "$np" "$work/np$np"; then ok "mpirun -np $np"; else bad "mpirun -np $np: $(tail -3 "$work/np$np.log")"; continue; fi
  "$zfold" compare "$work/single" "$work/np$np" --min-agreement 0.999 --max-ppl-diff 0.001 > "$work/cmp$np" \
    && ok "np $np vs single: $(grep -o 'codes agreeing:.*' "$work/cmp$np")" || { bad "np $np vs single"; cat "$work/cmp$np"; }
done
run 2 "$work/np2b" || bad "second np 2 run"
"$zfold" compare "$work/np2" "$work/np2b" > "$work/cmp2b"
grep -q "byte-identical blocks: 5 of 5" "$work/cmp2b" && ok "two np 2 runs are byte-identical" || { bad "np 2 repeat"; cat "$work/cmp2b"; }
cmp -s "$work/np2/unquantized.h5" "$work/np2b/unquantized.h5" && ok "unquantized.h5 identical" || bad "unquantized.h5 differs"
# compare cannot pass a perplexity limit with no perplexities to hold to it
cp -r "$work/np2" "$work/np2-noreport" && rm "$work/np2-noreport/report.json"
"$zfold" compare "$work/np2-noreport" "$work/np2b" --max-ppl-diff 0.001 > "$work/cmpnr" 2>&1 \
  && { bad "compare passed --max-ppl-diff without a report"; cat "$work/cmpnr"; } \
  || ok "compare refuses --max-ppl-diff with nothing to compare: $(grep -o 'no perplexity.*' "$work/cmpnr")"
# the parallel schedule: one full-precision pass, all units at once; 3 ranks against one process
run 0 "$work/par1" --set schedule=parallel || bad "parallel schedule, one process"
if run 3 "$work/par3" --set schedule=parallel; then
  "$zfold" compare "$work/par1" "$work/par3" --min-agreement 0.999 --max-ppl-diff 0.001 > "$work/cmpp" \
    && ok "parallel schedule, np 3 vs one process: $(grep -o 'codes agreeing:.*' "$work/cmpp")" \
    || { bad "parallel schedule np 3 vs one process"; cat "$work/cmpp"; }
else bad "parallel schedule np 3: $(tail -3 "$work/par3.log")"; fi
# fp64 sums sent in fp32: half the Hessian bytes, codes as good as the fp64 reduction's
if run 3 "$work/w32" --set hessian_reduce_fp32=true; then
  "$zfold" compare "$work/single" "$work/w32" --min-agreement 0.99 --max-ppl-diff 0.005 > "$work/cmpw" \
    && ok "fp32 wire, np 3 vs single: $(grep -o 'codes agreeing:.*' "$work/cmpw")" \
    || { bad "fp32 wire np 3 vs single"; cat "$work/cmpw"; }
  mb64=$(grep -o 'comm [0-9.]* MB' "$work/np3.log" | head -1 | awk '{print $2}')
  mb32=$(grep -o 'comm [0-9.]* MB' "$work/w32.log" | head -1 | awk '{print $2}')
  awk -v a="$mb32" -v b="$mb64" 'BEGIN { exit !(a > 0 && a < 0.6 * b) }' \
    && ok "fp32 wire moves $mb32 MB per block against $mb64 MB" || bad "fp32 wire moves $mb32 MB, fp64 $mb64 MB"
else bad "fp32 wire np 3: $(tail -3 "$work/w32.log")"; fi
"$zfold" quantize "$work/run.yaml" --set hessian_reduce_fp32=true --set backend=cuda --dry-run > "$work/w32cuda.log" 2>&1 \
  && bad "hessian_reduce_fp32 accepted with backend cuda" \
  || { grep -q "hessian_reduce_fp32: true needs backend: cpu" "$work/w32cuda.log" && ok "fp32 wire refused with cuda" \
       || { bad "fp32 wire with cuda: wrong message"; cat "$work/w32cuda.log"; }; }
# more ranks than groups: teams split each group's rows; the wire model holds for rank 0
if run 6 "$work/np6"; then
  grep -q 'groups split by rows across teams of ranks' "$work/np6.log" && ok "6 ranks: teams formed" || bad "6 ranks: no teams"
  "$zfold" compare "$work/single" "$work/np6" --min-agreement 0.999 --max-ppl-diff 0.001 > "$work/cmp6" \
    && ok "np 6 (teams) vs single: $(grep -o 'codes agreeing:.*' "$work/cmp6")" || { bad "np 6 vs single"; cat "$work/cmp6"; }
  # each layer's ΔL from a team (a group's members split over its ranks; with the ζ refit, scored per member and
  # process) is the single process's
  run 0 "$work/single-z" --set refit_zeta=true || bad "single process run, refit_zeta (see $work/single-z.log)"
  run 6 "$work/np6-z" --set refit_zeta=true || bad "mpirun -np 6, refit_zeta (see $work/np6-z.log)"
  python3 - "$work/single" "$work/np6" "$work/single-z" "$work/np6-z" <<'PY' && ok "np 6: every layer's ΔL as alone" \
    || bad "np 6: a layer's ΔL differs from the single process's (above)"
import json, sys
for one, team in ((sys.argv[1], sys.argv[2]), (sys.argv[3], sys.argv[4])):
    a, b = (json.load(open(d + "/report.json")) for d in (one, team))
    for ba, bb in zip(a["blocks"], b["blocks"]):
        for name, la in ba["layers"].items():
            x, y = la["delta_loss_after"], bb["layers"][name]["delta_loss_after"]
            assert abs(x - y) <= 1e-5 * x, (team, ba["block"], name, x, y)
PY
  grep -E 'comm ([0-9.]+) MB \(model \1 MB\)' -q "$work/np6.log" && ok "np 6: bytes as modelled" \
    || bad "np 6 bytes: $(grep -o 'comm .*' "$work/np6.log" | head -1)"
else bad "mpirun -np 6: $(tail -3 "$work/np6.log")"; fi
# a rank's inputs kept and their Gram matrix reduced in column panels: the Hessians of the sums
if run 3 "$work/in3" --set hessian_capture=inputs; then
  "$zfold" compare "$work/single" "$work/in3" --min-agreement 0.999 --max-ppl-diff 0.001 > "$work/cmpi" \
    && ok "stored inputs, np 3 vs single: $(grep -o 'codes agreeing:.*' "$work/cmpi")" || { bad "stored inputs np 3"; cat "$work/cmpi"; }
  grep -E 'comm ([0-9.]+) MB \(model \1 MB\)' -q "$work/in3.log" && ok "stored inputs: bytes as modelled" \
    || bad "stored inputs bytes: $(grep -o 'comm .*' "$work/in3.log" | head -1)"
else bad "stored inputs np 3: $(tail -3 "$work/in3.log")"; fi
# a failure every rank meets alike (a calibration file too short for its header): one rank prints it, exit 1
printf 'abc' > "$work/short.tok"
rm -rf "$work/out"
timeout 120 mpirun -np 3 "$zfold" quantize "$work/run.yaml" --set calibration.file="$work/short.tok" > "$work/short.log" 2>&1
rc=$?
n=$(grep -c 'error:' "$work/short.log")
[ "$rc" -eq 1 ] && [ "$n" -eq 1 ] && grep -q 'short.tok: file is 3 bytes' "$work/short.log" \
  && ok "the same failure on 3 ranks: exit 1, one error line" \
  || { bad "the same failure on 3 ranks: exit $rc, $n error lines"; grep error "$work/short.log"; }
finish
