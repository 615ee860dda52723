#!/usr/bin/env bash
# `zfold export` and the export: section: the GPTQ folder read back by an independent reader (tests/export/
# gptq_reader.py: AutoGPTQ's unpacking, its own float64 forward) within 1e-4 of the run's perplexity, the padded MLP,
# sharding, the tokenizer files, resume (a finished export kept, an interrupted one cleaned), float16's perplexity
# change through `zfold eval` on the folder, and the refusals. The full fixture × bits matrix: tests/export/matrix.sh.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
source "$root/tests/export/cases.sh"

# a source folder with the side files a Hub model has beside its weights
src=$work/src
cp -r "$fixtures/stories260k" "$src"
echo '{"bos_token_id": 1, "eos_token_id": 2}' > "$src/generation_config.json"
echo '{"model_max_length": 512}' > "$src/tokenizer_config.json"
tokens=$(eval_tokens "$src")

# 1. quantize with an export: section (exact scales, format gptq)
{ case_yaml "$src" zfold 3 -1 "$work/run"; printf 'export:\n  folder: %s\n  dtype: float32\n' "$work/exp"; } > "$work/run.yaml"
"$zfold" quantize "$work/run.yaml" > "$work/q1.log" 2>&1 || bad "quantize with export: $(tail -2 "$work/q1.log")"
ppl=$(report_ppl "$work/run")
for f in config.json quantize_config.json model.safetensors generation_config.json tokenizer_config.json tokenizer.bin; do
  [ -f "$work/exp/$f" ] || bad "export: no $f"
done
cmp -s "$src/tokenizer_config.json" "$work/exp/tokenizer_config.json" && ok "side files copied" || bad "side files differ"
ls -d "$work"/exp.tmp.* > /dev/null 2>&1 && bad "a temporary folder was left" || ok "no temporary folder left"
info=$("$py" "$reader" check "$work/exp" 2>&1)
grep -q '"inner": 192' <<< "$info" && grep -q '"checkpoint_format": "gptq"' <<< "$info" && grep -q '"bits": 3' <<< "$info" \
  && ok "structure: $info" || bad "structure: $info"
"$py" - "$work/exp" <<'PY' && ok "config: padded intermediate_size, quantization_config with meta" || bad "config fields"
import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
q = c["quantization_config"]
assert c["intermediate_size"] == 192 and q["meta"]["intermediate_size_unpadded"] == 172, c
assert q["group_size"] == -1 and q["desc_act"] is False and q["sym"] is False and q["quant_method"] == "gptq", q
assert q["meta"]["method"] == "zfold" and q["meta"]["quantizer"][0].startswith("zfold:") and len(q["meta"]["config_hash"]) == 16
assert json.load(open(sys.argv[1] + "/quantize_config.json")) == q
PY
got=$("$py" "$reader" ppl "$work/exp" "$tokens" 256 8 2>&1)
d=$(rel "$got" "$ppl")
below "$d" 1e-4 && ok "reader's perplexity $got, the run's $ppl (rel. diff $d)" || bad "reader's $got, run's $ppl ($d)"

# 2. the same command again: the run and its export are finished, nothing is rewritten
before=$(stat -c %Y.%i "$work/exp/model.safetensors")
"$zfold" quantize "$work/run.yaml" > "$work/q2.log" 2>&1 || bad "second quantize: $(tail -2 "$work/q2.log")"
grep -q "already holds this run's export" "$work/q2.log" && [ "$(stat -c %Y.%i "$work/exp/model.safetensors")" = "$before" ] \
  && ok "a finished export is kept" || bad "the export was redone"

# 3. gptq_v2, sharded, with a stale temporary folder of an interrupted export beside it
mkdir -p "$work/exp2.tmp.2147480000" && echo partial > "$work/exp2.tmp.2147480000/model.safetensors"
"$zfold" export "$work/run" "$work/exp2" --format gptq_v2 --dtype float32 --max-shard-size 100KB > "$work/e2.log" 2>&1 \
  || bad "export gptq_v2: $(tail -1 "$work/e2.log")"
[ ! -e "$work/exp2.tmp.2147480000" ] && ok "stale temporary folder removed" || bad "stale temporary folder kept"
n=$(ls "$work/exp2"/model-*-of-*.safetensors 2>/dev/null | wc -l)
[ "$n" -ge 2 ] && [ -f "$work/exp2/model.safetensors.index.json" ] && ok "sharded into $n files with an index" \
  || bad "sharding: $n files"
got=$("$py" "$reader" ppl "$work/exp2" "$tokens" 256 8 2>&1)
below "$(rel "$got" "$ppl")" 1e-4 && ok "gptq_v2 sharded: reader's perplexity $got" || bad "gptq_v2: reader's $got, run's $ppl"

# 4. float16 (the default): zfold eval on the folder, the reader on the same folder, the rounding's change
"$zfold" export "$work/run" "$work/exp16" > "$work/e3.log" 2>&1 || bad "export float16: $(tail -1 "$work/e3.log")"
sed -e "s#^model: .*#model: $work/exp16#" -e "s#^output: .*#output: $work/eval16#" "$work/run.yaml" | grep -v "^export:\|^  folder\|^  dtype" > "$work/eval.yaml"
"$zfold" eval "$work/eval.yaml" > "$work/ev.log" 2>&1 || bad "zfold eval of the export: $(tail -2 "$work/ev.log")"
p16=$(report_ppl "$work/eval16")
r16=$("$py" "$reader" ppl "$work/exp16" "$tokens" 256 8 2>&1)
below "$(rel "$r16" "$p16")" 1e-4 && ok "float16 folder: zfold eval $p16, reader $r16" || bad "float16: zfold eval $p16, reader $r16"
change=$(rel "$p16" "$ppl")
below "$change" 0.01 && ok "float16 rounding changes the perplexity by $change" || bad "float16 changes it by $change"
"$zfold" quantize "$work/eval.yaml" > "$work/qq.log" 2>&1
[ $? -eq 1 ] && grep -q "a GPTQ checkpoint" "$work/qq.log" && ok "quantize refuses a GPTQ checkpoint" || bad "quantize of a GPTQ folder"

# 5. refusals
"$zfold" export "$work/run" "$work/exp" --dtype float16 > "$work/r1.log" 2>&1
[ $? -eq 1 ] && grep -q "holds another export" "$work/r1.log" && ok "another export in the folder refused" || bad "$(tail -1 "$work/r1.log")"
mkdir -p "$work/other" && "$zfold" export "$work/run" "$work/other" > "$work/r2.log" 2>&1
[ $? -eq 1 ] && grep -q "is not a zfold export" "$work/r2.log" && ok "a foreign folder refused" || bad "$(tail -1 "$work/r2.log")"
cp -r "$work/run" "$work/run-cut" && rm "$work/run-cut/blocks/block-0002.h5"
"$zfold" export "$work/run-cut" "$work/exp-cut" > "$work/r3.log" 2>&1
[ $? -eq 1 ] && grep -q "block 2: " "$work/r3.log" && [ ! -e "$work/exp-cut" ] && ok "unfinished run refused" \
  || bad "unfinished run: $(tail -1 "$work/r3.log")"
"$zfold" export "$work/run" "$work/x" --format gptq_v3 > /dev/null 2>&1; [ $? -eq 2 ] && ok "bad --format: usage" || bad "bad --format"
"$zfold" export "$work/run" > /dev/null 2>&1; [ $? -eq 2 ] && ok "one folder only: usage" || bad "missing OUT_DIR"
cp -r "$work/exp16" "$work/bad5" && sed -i 's/"bits":\t3/"bits":\t5/' "$work/bad5/config.json"
sed -e "s#^model: .*#model: $work/bad5#" "$work/eval.yaml" > "$work/bad5.yaml"
"$zfold" eval "$work/bad5.yaml" > "$work/r4.log" 2>&1
[ $? -eq 1 ] && grep -q "quantization_config.bits" "$work/r4.log" && ok "5-bit quantization_config refused" || bad "$(tail -1 "$work/r4.log")"
cp -r "$work/exp16" "$work/noz" && "$py" - "$work/noz/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]
raw = open(p, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
del h["model.layers.1.mlp.up_proj.qzeros"]
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + raw[8 + n:])
PY
sed -e "s#^model: .*#model: $work/noz#" "$work/eval.yaml" > "$work/noz.yaml"
"$zfold" eval "$work/noz.yaml" > "$work/r5.log" 2>&1
[ $? -eq 1 ] && grep -q "no tensor 'model.layers.1.mlp.up_proj.qzeros'" "$work/r5.log" && ok "missing qzeros named" \
  || bad "missing qzeros: $(tail -1 "$work/r5.log")"

# 6. the padded MLP with groups (llama-mini 688 → 768, OPTQ group 128) and OPT (biases, positions)
rows=""
check_case llama-mini optq 4 128
check_case opt-mini zfold 3 -1
printf '%s' "$rows"
finish
