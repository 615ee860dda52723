# Sourced by tests/cli/export.sh and tests/export/matrix.sh (after tests/lib.sh): one run of a fixture, exported
# in both formats with exact (float32) scales and read back by gptq_reader.py, and in float16 read back by zfold eval.
reader=$root/tests/export/gptq_reader.py
# numpy comes from Debian's python3-numpy (scripts/install-deps.sh); an earlier python3 on PATH may lack it
py=""
for p in python3 /usr/bin/python3; do
  if "$p" -c "import numpy" 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || { echo "FAILED: no python3 with numpy (scripts/install-deps.sh installs python3-numpy)"; exit 1; }

# eval_tokens MODEL: the token file a fixture is evaluated on (tinystories for stories260k, else the held-out book)
eval_tokens() {
  if grep -q '"hidden_size": 64' "$1/config.json"; then echo "$fixtures/data/tinystories.tok512.bin"
  else echo "$fixtures/data/heldout-book.tok512.bin"; fi
}

# case_yaml MODEL_DIR METHOD BITS GROUP OUT: a run config on a fixture folder (stories260k, llama-mini, opt-mini)
case_yaml() {
  local calib=$fixtures/data/train-corpus.tok512.bin evalf model=$1
  evalf=$(eval_tokens "$model")
  grep -q '"hidden_size": 64' "$model/config.json" && calib=$fixtures/data/wikitext2-valid.tok512.bin
  cat <<YAML
model: $model
output: $5
method: $2
bits: $3
group_size: $4
calibration:
  file: $calib
  windows: 8
  seq_len: 256
eval:
  files: [$evalf]
  max_windows: 8
  seq_len: 256
  fp: false
YAML
}

# rel A B: |A − B| / |B|
rel() { "$py" -c "import sys; a, b = map(float, sys.argv[1:]); print('%.3g' % (abs(a - b) / abs(b)))" "$1" "$2"; }
below() { "$py" -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$2"; }
report_ppl() { "$py" -c "import json, sys; print(json.load(open(sys.argv[1]))['eval'][0]['ppl'])" "$1/report.json"; }

# check_case FIXTURE METHOD BITS GROUP: quantize, export gptq and gptq_v2 in float32 (reader's perplexity within 1e-4
# of the run's), export float16 (zfold eval's perplexity of it within 1e-4 of the reader's; its change from the run
# printed and held under 1 %). Adds a table row to $rows: model, bits, group, method, the run's perplexity, the
# reader's relative differences, grids stored shifted in format gptq, float16's perplexity and its change.
check_case() {
  local tag=$1-$3-$4 dir=$work/case-$1-$3-$4
  mkdir -p "$dir"
  case_yaml "$fixtures/$1" "$2" "$3" "$4" "$dir/run" > "$dir/run.yaml"
  if ! "$zfold" quantize "$dir/run.yaml" > "$dir/quantize.log" 2>&1; then
    bad "$tag: quantize failed: $(tail -2 "$dir/quantize.log")"
    return
  fi
  local ppl tokens diffs="" fmt shifted=-
  ppl=$(report_ppl "$dir/run")
  tokens=$(eval_tokens "$fixtures/$1")
  for fmt in gptq gptq_v2; do
    if ! "$zfold" export "$dir/run" "$dir/$fmt" --format "$fmt" --dtype float32 > "$dir/export-$fmt.log" 2>&1; then
      if [ "$fmt" = gptq ] && grep -q "zero point 0 and uses code" "$dir/export-$fmt.log"; then
        diffs="$diffs refused(v1)"; ok "$tag: format gptq refused a zero point it cannot store: $(tail -1 "$dir/export-$fmt.log")"
        continue
      fi
      bad "$tag: export $fmt failed: $(tail -1 "$dir/export-$fmt.log")"; continue
    fi
    local got d
    got=$("$py" "$reader" ppl "$dir/$fmt" "$tokens" 256 8 2>&1) || { bad "$tag $fmt: reader: $(tail -1 <<< "$got")"; continue; }
    d=$(rel "$got" "$ppl")
    diffs="$diffs $d"
    [ "$fmt" = gptq ] && shifted=$(grep -o "[0-9]* zero points\? stored shifted" "$dir/export-$fmt.log" | cut -d' ' -f1)
    if below "$d" 1e-4; then ok "$tag $fmt float32: reader's ppl $got, run's $ppl (rel. diff $d)"
    else bad "$tag $fmt float32: reader's ppl $got, run's $ppl (rel. diff $d > 1e-4)"; fi
  done
  if ! "$zfold" export "$dir/run" "$dir/f16" --format gptq_v2 > "$dir/export-f16.log" 2>&1; then
    bad "$tag: float16 export failed: $(tail -1 "$dir/export-f16.log")"; return
  fi
  sed -e "s#^model: .*#model: $dir/f16#" -e "s#^output: .*#output: $dir/eval-f16#" "$dir/run.yaml" > "$dir/eval.yaml"
  if ! "$zfold" eval "$dir/eval.yaml" > "$dir/eval.log" 2>&1; then
    bad "$tag: zfold eval of the float16 export failed: $(tail -1 "$dir/eval.log")"; return
  fi
  local p16 r16 change
  p16=$(report_ppl "$dir/eval-f16")
  r16=$("$py" "$reader" ppl "$dir/f16" "$tokens" 256 8 2>&1) || { bad "$tag float16: reader: $(tail -1 <<< "$r16")"; return; }
  change=$(rel "$p16" "$ppl")
  if below "$(rel "$r16" "$p16")" 1e-4; then ok "$tag float16: zfold eval $p16, reader $r16"
  else bad "$tag float16: zfold eval $p16, reader $r16 (rel. diff > 1e-4)"; fi
  if below "$change" 0.01; then ok "$tag float16 rounding changes the perplexity by $change (run $ppl, export $p16)"
  else bad "$tag float16 rounding changes the perplexity by $change (run $ppl, export $p16; > 1 %)"; fi
  rows="$rows| $1 | $3 | $4 | $2 | $ppl |$diffs | $shifted | $p16 | $change |"$'\n'
  rm -rf "$dir"
}
