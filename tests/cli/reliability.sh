#!/usr/bin/env bash
# Bad input refused before anything is computed, in words that say what is wrong; what a run reads checked for
# changes; signals during evaluation; run directories that are read-only, foreign or left with temporary files.
source "$(dirname "$0")/../lib.sh"
set +e
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
base() { # base OUTPUT [MODEL]: a small RTN run config
  cat <<YAML
model: ${2:-$fixtures/stories260k}
output: $1
method: rtn
calibration:
  file: $work/calib.bin
  windows: 4
  seq_len: 128
eval:
  files: [$fixtures/data/tinystories.tok512.bin]
  max_windows: 4
YAML
}
cp "$fixtures/data/tinystories.tok512.bin" "$work/calib.bin"
base "$work/out" > "$work/run.yaml"
# expect_fail RC NEEDLE ARGS...: zfold exits with RC and its output holds NEEDLE
expect_fail() {
  local want=$1 needle=$2 label=$3; shift 3
  "$zfold" "$@" > "$work/x.log" 2>&1
  local rc=$?
  if [ "$rc" -eq "$want" ] && grep -qF -- "$needle" "$work/x.log"; then ok "$label"
  else bad "$label: exit code $rc (expected $want), output: $(grep -v '^  \|^[a-z_.]*:' "$work/x.log" | tail -2)"; fi
}
# A copy of the stories260k checkpoint with tensor NAME's element I set to VALUE (python float syntax).
poke() {
  rm -rf "$work/m" && cp -r "$fixtures/stories260k" "$work/m"
  python3 - "$work/m/model.safetensors" "$1" "$2" "$3" <<'PY'
import json, struct, sys
p, name, i, v = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
b = bytearray(open(p, "rb").read()); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
o0, o1 = h[name]["data_offsets"]
for o in (range(8 + n + o0, 8 + n + o1, 4) if i < 0 else [8 + n + o0 + 4 * i]): b[o:o + 4] = struct.pack("<f", v)
open(p, "wb").write(b)
PY
}

# non-finite values: refused naming the tensor and index, before the run directory is made
poke model.embed_tokens.weight 70 inf
expect_fail 1 "tensor 'model.embed_tokens.weight' holds +Inf at [1, 6]" "Inf in the embedding refused" quantize "$work/run.yaml" --set model="$work/m"
[ ! -e "$work/out" ] && ok "nothing written for a non-finite checkpoint" || bad "an output folder was made"
poke model.norm.weight 3 nan
expect_fail 1 "tensor 'model.norm.weight' holds NaN at [3]" "NaN in the final norm refused" quantize "$work/run.yaml" --set model="$work/m"
poke model.layers.1.post_attention_layernorm.weight -1 3e38
expect_fail 1 "block 1: inputs of layer group mlp_in" "a non-finite activation names the block and layer group" quantize "$work/run.yaml" --set model="$work/m" --set output="$work/act"

# --dry-run checks every tensor and token file
poke model.layers.3.mlp.up_proj.weight 5 nan
expect_fail 1 "model.layers.3.mlp.up_proj.weight' holds NaN" "dry run: NaN weights" quantize "$work/run.yaml" --dry-run --set model="$work/m"
python3 - "$work/m/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
h["model.layers.2.mlp.gate_proj.weight_renamed"] = h.pop("model.layers.2.mlp.gate_proj.weight")
t = json.dumps(h, separators=(",", ":")).encode(); t += b" " * (-len(t) % 8)
open(p, "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
PY
expect_fail 1 "no tensor 'model.layers.2.mlp.gate_proj.weight'" "dry run: missing tensor" quantize "$work/run.yaml" --dry-run --set model="$work/m"
expect_fail 1 "calibration.file: $work/nothing.bin: cannot open" "dry run: missing calibration file" quantize "$work/run.yaml" --dry-run --set calibration.file="$work/nothing.bin"
python3 - "$work/oov.bin" <<'PY'
import struct, sys
open(sys.argv[1], "wb").write(struct.pack("<3i", 20240520, 1, 300) + bytes(1012) + struct.pack("<300H", *([5] * 299 + [600])))
PY
expect_fail 1 "eval.files[0]: $work/oov.bin: token 299 has id 600" "dry run: out-of-vocabulary eval file" quantize "$work/run.yaml" --dry-run --set eval.files="$work/oov.bin"
expect_fail 1 "eval.files[0]" "quantize: a bad eval file is found before the first block" quantize "$work/run.yaml" --set eval.files="$work/oov.bin" --set output="$work/early"
[ ! -e "$work/early/blocks" ] && ok "no block computed with a bad eval file" || bad "blocks were computed before the eval file was checked"
expect_fail 1 "eval.seq_len 1024 exceeds the model's max_position_embeddings 512" "LLaMA eval.seq_len above max_position_embeddings" quantize "$work/run.yaml" --dry-run --set eval.seq_len=1024
printf 'output: x\n' > "$work/empty_path.yaml"; base "$work/o2" | sed 's#files: \[.*\]#files: [""]#' > "$work/empty_path.yaml"
expect_fail 1 "eval.files[0]: a token file's path is empty" "an empty eval path is named" quantize "$work/empty_path.yaml" --dry-run
python3 - "$fixtures/data/tinystories.tok512.bin" "$work/short.bin" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read(); n = 150
open(sys.argv[2], "wb").write(b[:8] + struct.pack("<i", n) + b[12:1024] + b[1024:1024 + 2 * n])
PY
"$zfold" quantize "$work/run.yaml" --dry-run --set calibration.file="$work/short.bin" > "$work/x.log" 2>&1
grep -q "fewer than two windows" "$work/x.log" && ok "a calibration file shorter than two windows is warned about" || bad "no warning for overlapping calibration windows"

# configuration files
: > "$work/empty.yaml"
expect_fail 1 "the file is empty" "an empty config is named as such" quantize "$work/empty.yaml"
expect_fail 1 "is a folder" "a folder as config is named as such" quantize "$work"
{ cat "$work/run.yaml"; printf -- '---\nbits: 4\n'; } > "$work/two.yaml"
expect_fail 1 "a second YAML document" "a second YAML document is refused" quantize "$work/two.yaml" --dry-run
expect_fail 2 "expected key=value" "--set without '=' is a usage error" quantize "$work/run.yaml" --set bits
rm -rf "$work/deep" && cp -r "$fixtures/stories260k" "$work/deep"
python3 -c "print('{\"a\":' + '[' * 1200 + ']' * 1200 + '}')" > "$work/deep/config.json"
expect_fail 1 "nested 1201 levels deep" "a too-deep config.json is named as such" quantize "$work/run.yaml" --dry-run --set model="$work/deep"

# a quoted path with a newline survives the saved config.yaml
odd="$work/o\"dd
dir"
"$zfold" quantize "$work/run.yaml" --set output="$odd" > "$work/x.log" 2>&1 || bad "run into a folder with a quote and a newline: $(tail -2 "$work/x.log")"
python3 - "$odd/config.yaml" "$odd" <<'PY' && ok "config.yaml with a quote and a newline in a path is valid YAML" || bad "config.yaml does not read back"
import json, re, sys
text = open(sys.argv[1]).read()
line = [l for l in text.splitlines() if l.startswith("output: ")][0]
assert json.loads(line[len("output: "):]) == sys.argv[2], line  # the YAML double-quoted escapes used are JSON's
PY

# the reference run; shards are the same in another folder (the provenance holds no output path)
"$zfold" quantize "$work/run.yaml" > "$work/ref.log" 2>&1 || { bad "reference run: $(tail -3 "$work/ref.log")"; finish; exit 1; }
cmp -s "$work/out/blocks/block-0000.h5" "$odd/blocks/block-0000.h5" && ok "same shards in another output folder" || bad "shards differ between output folders"
"$zfold" compare "$work/out" "$odd" > "$work/x.log" 2>&1
grep -q "byte-identical blocks: 5 of 5" "$work/x.log" && ok "compare: identical runs at different paths are byte-identical" || bad "compare: $(head -4 "$work/x.log")"
# bytes that are not UTF-8 are refused before libfyaml, which loops forever on some of them in a directive
printf '%%FOO \xff\xff\nbits: 3\n' > "$work/bad-utf8.yaml"
expect_fail 1 "bad-utf8.yaml:1:6: byte 0xff is not valid UTF-8" "a config that is not UTF-8 is refused" \
  quantize "$work/bad-utf8.yaml" --dry-run
# a corrupt shard is named by compare before HDF5 reads it
cp -r "$odd" "$work/corrupt"
python3 - "$work/corrupt/blocks/block-0002.h5" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[len(b) // 2] ^= 0xff; open(sys.argv[1], "wb").write(bytes(b))
PY
expect_fail 1 "block-0002.h5: XXH64" "compare: a corrupt shard is named before it is read" compare "$work/out" "$work/corrupt"

# inputs changed in place (same paths) are found on resume
poke model.norm.weight 0 1.0
base "$work/chg" "$work/m" > "$work/chg.yaml"
"$zfold" quantize "$work/chg.yaml" > "$work/x.log" 2>&1 || bad "run on a copy of the checkpoint: $(tail -2 "$work/x.log")"
cp "$fixtures/data/ptb-valid.tok512.bin" "$work/calib.bin"
expect_fail 1 "calibration.file has changed since the run began" "a replaced calibration file is refused on resume" quantize "$work/chg.yaml"
cp "$fixtures/data/tinystories.tok512.bin" "$work/calib.bin"
python3 - "$work/m/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
o = 8 + n + h["model.norm.weight"]["data_offsets"][0]; b[o:o + 4] = struct.pack("<f", 0.5); open(p, "wb").write(b)
PY
expect_fail 1 "tensor model.norm.weight has changed" "a replaced checkpoint tensor is refused on resume" quantize "$work/chg.yaml"

# temporary files of an interrupted write are removed by a resume
head -c 5000 "$work/out/blocks/block-0001.h5" > "$work/out/blocks/block-0002.h5.tmp.99999"
echo partial > "$work/out/manifest.json.tmp.12345"
"$zfold" quantize "$work/run.yaml" > "$work/x.log" 2>&1
[ -z "$(find "$work/out" -name '*.tmp.*')" ] && grep -q "left by an interrupted write" "$work/x.log" \
  && ok "a resume removes the temporary files left by a kill" || bad "temporary files left: $(find "$work/out" -name '*.tmp.*')"

# a folder that is not a run directory is neither written nor cleaned
mkdir -p "$work/foreign" && echo mine > "$work/foreign/report.json"
expect_fail 1 "is not a zfold run directory" "a non-empty foreign folder is refused" quantize "$work/run.yaml" --set output="$work/foreign"
expect_fail 1 "is not a zfold run directory" "--restart in a foreign folder is refused" quantize "$work/run.yaml" --set output="$work/foreign" --restart
[ "$(cat "$work/foreign/report.json")" = mine ] && ok "the foreign folder's files are untouched" || bad "a foreign file was overwritten"

# eval: a missing run directory is not created; a read-only one is evaluated
expect_fail 1 "not a zfold run directory" "eval of a missing folder is refused" eval "$work/run.yaml" --set output="$work/none"
[ ! -e "$work/none" ] && ok "eval does not create a missing folder" || bad "eval created $work/none"
before=$(sha256sum "$work/out/manifest.json")
chmod -R a-w "$work/out"
if [ "$(id -u)" -eq 0 ] && mkdir -p "$work/ro" && mount --bind "$work/out" "$work/ro" 2> /dev/null && mount -o remount,bind,ro "$work/ro" 2> /dev/null; then
  "$zfold" eval "$work/run.yaml" --set output="$work/ro" --set eval.max_windows=3 > "$work/x.log" 2>&1 \
    && ok "eval of a finished run on read-only storage" || bad "eval on read-only storage: $(grep error "$work/x.log")"
  umount "$work/ro"
else
  "$zfold" eval "$work/run.yaml" --set eval.max_windows=3 > "$work/x.log" 2>&1 \
    && ok "eval of a finished run without write permission" || bad "eval without write permission: $(grep error "$work/x.log")"
fi
chmod -R u+w "$work/out"
[ "$before" = "$(sha256sum "$work/out/manifest.json")" ] && ok "eval leaves the manifest as it was" || bad "eval rewrote the manifest"

# signals during evaluation stop it (exit code 3); finished files are kept, not measured again
"$zfold" eval "$work/run.yaml" --set eval.files="$fixtures/data/tinystories.tok512.bin,$fixtures/data/wikitext2-test.tok512.bin" \
  --set eval.max_windows=1500 > "$work/sig.log" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q "eval .*tinystories" "$work/sig.log" && break; sleep 0.1; done
sleep 0.5
kill -TERM $pid
wait $pid
rc=$?
[ "$rc" -eq 3 ] && grep -q "stopped by a signal during evaluation" "$work/sig.log" && ok "SIGTERM during eval: exit code 3" \
  || bad "SIGTERM during eval: exit code $rc: $(tail -2 "$work/sig.log")"
"$zfold" eval "$work/run.yaml" --set eval.files="$fixtures/data/tinystories.tok512.bin" --set eval.max_windows=1500 > "$work/x.log" 2>&1
grep -q "tinystories.tok512.bin: ppl .*kept from an earlier evaluation" "$work/x.log" && ok "a finished evaluation file is not redone" \
  || bad "the finished evaluation was redone: $(grep 'eval ' "$work/x.log")"
"$zfold" quantize "$work/run.yaml" --set output="$work/early2" > "$work/s.log" 2>&1 &
pid=$!
# the signal goes once the handler is installed (SIGTERM is bit 14 of SigCgt); before that it kills like any process
for _ in $(seq 300); do
  cgt=$(awk '/^SigCgt:/ {print $2}' /proc/$pid/status 2>/dev/null) && [ -n "$cgt" ] && (( 0x$cgt & 0x4000 )) && break
  sleep 0.02
done
kill -TERM $pid
wait $pid
rc=$?
[ "$rc" -eq 3 ] && ok "SIGTERM while starting: exit code 3" || bad "SIGTERM while starting: exit code $rc"

# layer: a Hessian must be symmetric
python3 - "$work/layer.safetensors" <<'PY'
import json, struct, sys
w = [0.1 * (i % 7 - 3) for i in range(8 * 4)]; h = [1.0 if i % 5 == 0 else 0.0 for i in range(16)]; h[1] = 0.5
hdr = {"weight": {"dtype": "F32", "shape": [8, 4], "data_offsets": [0, 128]},
       "hessian": {"dtype": "F32", "shape": [4, 4], "data_offsets": [128, 192]}}
t = json.dumps(hdr).encode(); t += b" " * (-len(t) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(t)) + t + struct.pack("<32f", *w) + struct.pack("<16f", *h))
PY
expect_fail 1 "'hessian' is not symmetric: [0, 1]" "layer: a non-symmetric Hessian is refused" layer "$work/layer.safetensors" "$work/layer-out.safetensors" --method optq
finish
