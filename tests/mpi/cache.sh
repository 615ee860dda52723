#!/usr/bin/env bash
# The Hessian cache: cold and warm runs give the same codes as uncached ones, under any rank count; a damaged
# entry is refused by name; a sweep shares entries between its points and reports the time saved.
source "$(dirname "$0")/common.sh"
set +e
cache=$work/hcache
run 0 "$work/par-ref" --set schedule=parallel || bad "parallel, no cache"
run 0 "$work/seq-ref" || bad "sequential, no cache"
run 2 "$work/par-cold" --set schedule=parallel --set calibration.cache="$cache" || bad "parallel np 2, cold cache"
grep -q "Hessian cache .*: 0 read .*, 20 written" "$work/par-cold.log" && ok "cold parallel run wrote 20 entries" \
  || bad "cold run: $(grep 'Hessian cache' "$work/par-cold.log")"
run 3 "$work/par-warm" --set schedule=parallel --set calibration.cache="$cache" || bad "parallel np 3, warm cache"
grep -q "Hessian cache .*: 20 read (.* s of compute saved), 0 written" "$work/par-warm.log" \
  && ok "warm parallel run read 20 entries: $(grep -o '([0-9.]* s of compute saved)' "$work/par-warm.log")" \
  || bad "warm run: $(grep 'Hessian cache' "$work/par-warm.log")"
for r in par-cold par-warm; do
  "$zfold" compare "$work/par-ref" "$work/$r" --min-agreement 1 --max-ppl-diff 1e-6 > "$work/cmp-$r" \
    && ok "$r equals the uncached run: $(grep -o 'codes agreeing:.*' "$work/cmp-$r")" || { bad "$r vs uncached"; cat "$work/cmp-$r"; }
done
run 0 "$work/seq-warm" --set calibration.cache="$cache" || bad "sequential, warm cache"
grep -q "Hessian cache .*: 4 read" "$work/seq-warm.log" && ok "sequential run read block 0's 4 entries" \
  || bad "sequential warm: $(grep 'Hessian cache' "$work/seq-warm.log")"
"$zfold" compare "$work/seq-ref" "$work/seq-warm" --min-agreement 1 --max-ppl-diff 0 > "$work/cmp-seq" \
  && ok "sequential with the cache equals the uncached run" || { bad "sequential cached vs uncached"; cat "$work/cmp-seq"; }
# one flipped byte in an entry's data: refused, naming the entry
entry=$(ls "$cache"/*/b0000-mlp_up.hess 2>/dev/null || ls "$cache"/*/b0000-*.hess | head -1)
printf '\x7f' | dd of="$entry" bs=1 seek=200 conv=notrunc status=none
run 0 "$work/damaged" --set calibration.cache="$cache"; rc=$?
[ "$rc" -eq 1 ] && grep -q "$(basename "$entry").*damaged.*delete it" "$work/damaged.log" \
  && ok "damaged entry refused (exit 1): $(grep -o 'b0000[^ ]*: Hessian cache entry damaged' "$work/damaged.log")" \
  || bad "damaged entry: rc $rc, $(tail -2 "$work/damaged.log")"
# a sweep: the second point reuses the first point's block-0 entries
sed -e "s|^method: zfold|method: [optq, zfold]|" -e "s|^output: .*|output: $work/sweep|" "$work/run.yaml" > "$work/sweep.yaml"
"$zfold" sweep "$work/sweep.yaml" > "$work/sweep.log" 2>&1 || bad "sweep: $(tail -3 "$work/sweep.log")"
saved=$(awk -F, 'NR == 3 { print $NF }' "$work/sweep/sweep-summary.csv")
awk -v s="$saved" 'BEGIN { exit !(s > 0) }' && ok "sweep point 2 saved ${saved} s through the cache" \
  || bad "sweep: no time saved ($(cat "$work/sweep/sweep-summary.csv"))"
finish
