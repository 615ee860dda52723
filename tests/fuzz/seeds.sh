#!/usr/bin/env bash
# Writes the fuzz targets' seed corpus under OUT/<target>/ from the fixtures (and a one-block run of ZFOLD for a
# shard). Usage: seeds.sh ZFOLD OUT
set -euo pipefail
zfold=$1
out=$2
root=${ZF_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
fixtures=${ZF_FIXTURES:-$root/../shared/fixtures}
rm -rf "$out"
mkdir -p "$out"/{safetensors,st_index,config_json,yaml,tokens,shard}
python3 - "$out" "$fixtures" <<'PY'
import json, struct, sys
out, fixtures = sys.argv[1], sys.argv[2]
def safetensors(path, tensors, meta=None):
    header, data = {}, b""
    if meta: header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
safetensors(f"{out}/safetensors/f32.safetensors", [("a.weight", "F32", [2, 3], f32)], {"format": "pt"})
safetensors(f"{out}/safetensors/mixed.safetensors",
            [("b", "BF16", [4], b"\x80\x3f" * 4), ("h", "F16", [2, 2], b"\x00\x3c" * 4), ("i", "I32", [1], b"\x01\0\0\0"),
             ("s", "F32", [], b"\0\0\x80\x3f")])
index = {"metadata": {"total_size": 72}, "weight_map": {"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors"}}
open(f"{out}/st_index/index.json", "w").write(json.dumps(index, indent=2))
for name in ("stories260k", "opt-mini", "llama-mini"):
    try: open(f"{out}/config_json/{name}.json", "w").write(open(f"{fixtures}/{name}/config.json").read())
    except FileNotFoundError: pass
tok = open(f"{fixtures}/data/tinystories.tok512.bin", "rb").read()
hdr = bytearray(tok[:1024]); hdr[8:12] = struct.pack("<i", 200)
open(f"{out}/tokens/u16.bin", "wb").write(bytes(hdr) + tok[1024:1024 + 400])
ids = struct.unpack("<100H", tok[1024:1224])
h32 = bytearray(1024); h32[0:12] = struct.pack("<iii", 20240801, 7, 100)
open(f"{out}/tokens/u32.bin", "wb").write(bytes(h32) + struct.pack("<100I", *ids))
PY
cp "$root"/configs/*.yaml "$out/yaml/"
work=$(mktemp -d "${TMPDIR:-/tmp}/zfseeds.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat > "$work/run.yaml" <<YAML
model: $fixtures/stories260k
output: $work/out
method: zfold
calibration: {file: $fixtures/data/tinystories.tok512.bin, windows: 1, seq_len: 32}
YAML
# leaks are the sanitizer stage's to find (with its suppressions); here the run only makes the seed shards
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 "$zfold" quantize "$work/run.yaml" > "$work/log" 2>&1 \
  || { cat "$work/log"; exit 1; }
cp "$work/out/blocks/block-0000.h5" "$out/shard/"
cp "$work/out/unquantized.h5" "$out/shard/"
echo "seed corpus in $out: $(find "$out" -type f | wc -l) files"
