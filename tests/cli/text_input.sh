#!/usr/bin/env bash
# Text in: `zfold tokenize` makes the fixture token files from their raw texts byte for byte, and a run calibrated
# and evaluated on raw text (calibration.text, eval.texts) gives the codes and perplexities of the token-file run.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
raw=$fixtures/data/raw

"$zfold" tokenize "$raw/tinystories_sample.txt" "$raw/TinyStories-valid-excerpt30k.txt" --model "$fixtures/stories260k" \
  -o "$work/ts.bin" > "$work/tok.log" 2>&1 || bad "tokenize: $(cat "$work/tok.log")"
cmp -s "$work/ts.bin" "$fixtures/data/tinystories.tok512.bin" && ok "tokenize: tinystories.tok512.bin byte for byte" \
  || bad "tokenize: tinystories differs from the fixture"
grep -q "2 documents, 34140 bytes -> 17438 tokens" "$work/tok.log" && ok "tokenize: one line with the counts" \
  || bad "tokenize: $(cat "$work/tok.log")"
"$zfold" tokenize --decode "$work/ts.bin" --model "$fixtures/stories260k" -o "$work/ts.txt" \
  && cmp -s "$work/ts.txt" <(cat "$raw/tinystories_sample.txt" "$raw/TinyStories-valid-excerpt30k.txt") \
  && ok "tokenize --decode gives the source text back" || bad "tokenize --decode"
# JSON Lines, gzip-compressed, one document per line
python3 -c 'import json,sys; [print(json.dumps({"text": open(f, encoding="utf-8", newline="").read()})) for f in sys.argv[1:]]' \
  "$raw/tinystories_sample.txt" "$raw/TinyStories-valid-excerpt30k.txt" | gzip > "$work/ts.jsonl.gz"
"$zfold" tokenize "$work/ts.jsonl.gz" --model "$fixtures/stories260k/tokenizer.bin" -o "$work/ts2.bin" > /dev/null \
  && cmp -s "$work/ts2.bin" "$fixtures/data/tinystories.tok512.bin" && ok "tokenize: .jsonl.gz gives the same tokens" \
  || bad "tokenize: .jsonl.gz"
# bad input: the message names the file and the line
printf '{"text": "a"}\n{"txt": "b"}\n' > "$work/bad.jsonl"
"$zfold" tokenize "$work/bad.jsonl" --model "$fixtures/stories260k" -o "$work/bad.bin" > "$work/bad.log" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q 'bad.jsonl:2: expected a JSON object with a string "text"' "$work/bad.log" && [ ! -e "$work/bad.bin" ] \
  && ok "a bad JSON line is refused (exit 1, file and line named, no output)" || bad "bad jsonl: rc $rc $(cat "$work/bad.log")"
"$zfold" tokenize "$raw/ptb.valid.txt" --model "$fixtures/stories260k" > /dev/null 2>&1
[ $? -eq 2 ] && ok "tokenize without -o: usage error" || bad "tokenize without -o"

# a run from the token files, and the same run from the raw texts
run_yaml "$fixtures/stories260k" 4 128 optq > "$work/run.yaml"
"$zfold" quantize "$work/run.yaml" --set output="$work/ref" --set "eval.files=$fixtures/data/ptb-valid.tok512.bin" \
  > "$work/ref.log" 2>&1 || bad "token-file run: $(tail -3 "$work/ref.log")"
"$zfold" quantize "$work/run.yaml" --set output="$work/text" --set calibration.file= \
  --set "calibration.text=$raw/wiki.valid.tokens" --set eval.files= --set "eval.texts=$raw/ptb.valid.txt" \
  > "$work/text.log" 2>&1 || bad "text run: $(tail -3 "$work/text.log")"
cmp -s "$work/text/tokens/calibration.wiki.valid.tokens.tok.bin" "$fixtures/data/wikitext2-valid.tok512.bin" \
  && ok "calibration.text: the calibration token file of the fixture" || bad "calibration.text tokens differ"
# (the runs' perplexities are of differently named files: compare is read for the codes only)
"$zfold" compare "$work/ref" "$work/text" > "$work/cmp" 2>&1
grep -Eq "codes agreeing: ([0-9]+) of \1 \(1.000000\)" "$work/cmp" \
  && ok "the text run has the codes of the token-file run" || { bad "codes differ"; tail -3 "$work/cmp"; }
ppl() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["eval"][0]["ppl"])' "$1/report.json"; }
[ -n "$(ppl "$work/ref")" ] && [ "$(ppl "$work/ref")" = "$(ppl "$work/text")" ] \
  && ok "eval.texts: the perplexity of the token file ($(ppl "$work/ref"))" \
  || bad "eval.texts: ppl $(ppl "$work/text") vs $(ppl "$work/ref")"
# a sweep's summary has a column for each of eval.texts
sed -e "s|^bits: .*|bits: [3, 4]|" -e "s|^method: .*|method: rtn|" -e "s|^output: .*|output: $work/sweep|" \
  -e "s|^  files: .*|  texts: [ptb:$raw/ptb.valid.txt]|" -e "s|max_windows: 16|max_windows: 2|" "$work/run.yaml" > "$work/sweep.yaml"
"$zfold" sweep "$work/sweep.yaml" > "$work/sweep.log" 2>&1 || bad "sweep: $(tail -3 "$work/sweep.log")"
head -1 "$work/sweep/sweep-summary.csv" | grep -q ",ppl ptb.valid.txt," && [ "$(wc -l < "$work/sweep/sweep-summary.csv")" -eq 3 ] \
  && [ "$(awk -F, 'NR > 1 && $3 + 0 > 1' "$work/sweep/sweep-summary.csv" | wc -l)" -eq 2 ] && ok "sweep: a perplexity column for eval.texts" \
  || { bad "sweep summary"; cat "$work/sweep/sweep-summary.csv"; }
# both calibration keys at once is a config error
"$zfold" quantize "$work/run.yaml" --set output="$work/both" --set "calibration.text=$raw/ptb.valid.txt" \
  > "$work/both.log" 2>&1
[ $? -ne 0 ] && grep -q "calibration.file and calibration.text are both set" "$work/both.log" \
  && ok "calibration.file with calibration.text is refused" || bad "both calibration keys: $(tail -2 "$work/both.log")"
finish
