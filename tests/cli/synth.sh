#!/usr/bin/env bash
# `zfold synth` on the fixtures' llama-mini and opt-mini configs: Hub names and sharding (index against the shard
# headers), values that depend on the seed only, the stated distributions with their outlier channels, the token
# file, a plan and a quantize run on the result, and the failures (bad config, unwritable folder, full disk).
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

# A safetensors reader (header and bf16 values) and the checks below, in plain Python (no numpy), run by subcommand.
cat > "$work/st.py" <<'PY'
import json, math, operator, os, struct, sys
from array import array

def files(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        index = json.load(open(idx))
        return index, sorted(set(index["weight_map"].values()))
    return None, ["model.safetensors"]

def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))

def bf16(raw):
    """bf16 bytes as an array of floats: each value's two bytes are the high half of a float32"""
    f = bytearray(2 * len(raw))
    f[2::4], f[3::4] = raw[0::2], raw[1::2]
    return array("f", bytes(f))

def tensors(d):
    """name -> (file, dtype, shape, raw bytes)"""
    out = {}
    for fn in files(d)[1]:
        path = os.path.join(d, fn)
        n, h = header(path)
        raw = open(path, "rb").read()[8 + n:]
        for name, e in h.items():
            if name != "__metadata__":
                b, en = e["data_offsets"]
                out[name] = (fn, e["dtype"], e["shape"], raw[b:en])
    return out

def expected(cfg):
    """name -> shape, as common/model.c names the tensors"""
    d, L, v, mt = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["model_type"]
    e = {}
    if mt == "opt":
        f, p = cfg["ffn_dim"], "model.decoder."
        e[p + "embed_tokens.weight"] = [v, d]
        e[p + "embed_positions.weight"] = [cfg["max_position_embeddings"] + 2, d]
        for i in range(L):
            q = f"{p}layers.{i}."
            for n, o, k in [("self_attn.q_proj", d, d), ("self_attn.k_proj", d, d), ("self_attn.v_proj", d, d),
                            ("self_attn.out_proj", d, d), ("fc1", f, d), ("fc2", d, f)]:
                e[q + n + ".weight"], e[q + n + ".bias"] = [o, k], [o]
            for n in ("self_attn_layer_norm", "final_layer_norm"):
                e[q + n + ".weight"], e[q + n + ".bias"] = [d], [d]
        e[p + "final_layer_norm.weight"], e[p + "final_layer_norm.bias"] = [d], [d]
    else:
        f, hd = cfg["intermediate_size"], cfg.get("head_dim") or d // cfg["num_attention_heads"]
        qd, kd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
        e["model.embed_tokens.weight"] = [v, d]
        for i in range(L):
            q = f"model.layers.{i}."
            for n, s in [("self_attn.q_proj", [qd, d]), ("self_attn.k_proj", [kd, d]), ("self_attn.v_proj", [kd, d]),
                         ("self_attn.o_proj", [d, qd]), ("mlp.gate_proj", [f, d]), ("mlp.up_proj", [f, d]),
                         ("mlp.down_proj", [d, f]), ("input_layernorm", [d]), ("post_attention_layernorm", [d])]:
                e[q + n + ".weight"] = s
        e["model.norm.weight"] = [d]
    if not cfg.get("tie_word_embeddings", mt == "opt"):
        e["lm_head.weight"] = [v, d]
    return e

def check_layout(d, cfg_path, min_shards):
    """the index against the shard headers and the loader's names; header padding and contiguous offsets"""
    index, fns = files(d)
    assert len(fns) >= int(min_shards), f"{len(fns)} shards, expected >= {min_shards}"
    t = tensors(d)
    want = expected(json.load(open(cfg_path)))
    assert sorted(t) == sorted(want), f"names: extra {set(t) - set(want)}, missing {set(want) - set(t)}"
    for name, (fn, dt, shape, _) in t.items():
        assert dt == "BF16" and shape == want[name], f"{name}: {dt} {shape}, expected BF16 {want[name]}"
    total = sum(2 * math.prod(s) for s in want.values())
    if index is not None:
        wm = index["weight_map"]
        assert sorted(wm) == sorted(t), "weight_map does not cover exactly the shards' tensors"
        assert all(wm[n] == t[n][0] for n in t), "weight_map names the wrong shard"
        assert index["metadata"]["total_size"] == total, f"total_size {index['metadata']['total_size']} != {total}"
    for fn in fns:
        n, h = header(os.path.join(d, fn))
        assert n % 8 == 0 and h["__metadata__"] == {"format": "pt"}, f"{fn}: header length {n}, metadata"
        spans = sorted(e["data_offsets"] for k, e in h.items() if k != "__metadata__")
        assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:])), f"{fn}: gaps"
        assert os.path.getsize(os.path.join(d, fn)) == 8 + n + spans[-1][1], f"{fn}: size"
    print(f"{len(t)} tensors, {len(fns)} files, {total} bytes")

def check_same_values(a, b):
    ta, tb = tensors(a), tensors(b)
    assert sorted(ta) == sorted(tb)
    assert all(ta[n][3] == tb[n][3] for n in ta), "values differ"
    print(f"{len(ta)} tensors equal")

def moments(x):
    return sum(x) / len(x), math.fsum(map(operator.mul, x, x)) / len(x)

def std(m):
    return math.sqrt(max(m[1] - m[0] ** 2, 0))

def check_stats(d, sigma, sigma_emb, sigma_norm, sigma_bias):
    """std within 20 % of the stated σ off the outlier columns; outlier columns and channels present"""
    sigma, sigma_emb, sigma_norm, sigma_bias = map(float, (sigma, sigma_emb, sigma_norm, sigma_bias))
    ratios, worst = [], []
    for name, (_, _, shape, raw) in tensors(d).items():
        x = bf16(raw)
        assert all(map(math.isfinite, x)), f"{name}: not finite"
        if len(shape) == 2 and "embed" not in name:
            cols = [moments(x[j::shape[1]]) for j in range(shape[1])]
            norm = sorted(math.sqrt(c[1]) for c in cols)
            med = norm[len(norm) // 2]
            normal = [c for c in cols if math.sqrt(c[1]) <= 3 * med]
            ratios.append(norm[-1] / med)
            hot = len(cols) - len(normal)
            assert hot == max(1, int(0.005 * shape[1] + 0.5)), f"{name}: {hot} outlier columns"
            worst.append(abs(math.sqrt(sum(c[1] for c in normal) / len(normal)) / sigma - 1))
        elif len(shape) == 2:
            assert abs(std(moments(x)) / sigma_emb - 1) < 0.2, f"{name}: std {std(moments(x))}"
        elif name.endswith(".bias"):
            m = moments(x)
            assert abs(m[0]) < 0.01 and abs(std(m) / sigma_bias - 1) < 0.2, f"{name}: {m[0]} ± {std(m)}"
        else:
            hot, normal = [v for v in x if v > 4], array("f", [v for v in x if v <= 4])
            assert hot and all(abs(v / 8 - 1) < 0.1 for v in hot), f"{name}: outlier channels {hot}"
            m = moments(normal)
            assert abs(m[0] - 1) < 0.01 and abs(std(m) / sigma_norm - 1) < 0.2, f"{name}: {m[0]} ± {std(m)}"
    assert min(ratios) > 5, f"max / median column norm {min(ratios)}, expected > 5 in every linear weight"
    assert max(worst) < 0.2, f"std off by {max(worst):.3f} of σ = {sigma}"
    print(f"{len(ratios)} linear weights: std within {100 * max(worst):.1f}% of {sigma}, "
          f"max/median column norm >= {min(ratios):.1f}")

def check_tokens(path, count, vocab):
    count, vocab = int(count), int(vocab)
    raw = open(path, "rb").read()
    h, ids = array("i", raw[:1024]), array("H", raw[1024:])
    assert list(h[:3]) == [20240520, 1, count] and len(ids) == count, f"header {list(h[:3])}, {len(ids)} ids"
    assert min(ids) == 0 and max(ids) == vocab - 1, f"ids in [{min(ids)}, {max(ids)}]"
    print(f"{count} tokens in [0, {vocab})")

globals()["check_" + sys.argv[1]](*sys.argv[2:])
PY
py() { python3 "$work/st.py" "$@" 2>&1 | tail -1; }
llama=$fixtures/llama-mini/config.json
opt=$fixtures/opt-mini/config.json

# sharded: 0.002 GB against 6.3 MB of bf16
"$zfold" synth "$llama" "$work/a" --seed 7 --shard-size 0.002 --tokens 4000 > "$work/a.log" 2>&1 \
  && grep -qE '^zfold synth: 3164416 parameters, 4 shards, 6328832 bytes, [0-9.]+ s' "$work/a.log" \
  && ok "llama-mini: $(cat "$work/a.log")" || bad "llama-mini synth: $(tail -2 "$work/a.log")"
cmp -s "$llama" "$work/a/config.json" && ok "config.json copied byte for byte" || bad "config.json differs"
out=$(py layout "$work/a" "$llama" 3) && ok "llama layout: $out" || bad "llama layout: $out"
out=$(py stats "$work/a" 0.02 0.02 0.02 0.01) && ok "llama values: $out" || bad "llama values: $out"
out=$(py tokens "$work/a/tokens.bin" 4000 512) && ok "tokens.bin: $out" || bad "tokens.bin: $out"
"$zfold" synth "$opt" "$work/o" --seed 7 --tokens 2000 > "$work/o.log" 2>&1 \
  && grep -q '1 shard, ' "$work/o.log" && [ -f "$work/o/model.safetensors" ] && [ ! -e "$work/o/model.safetensors.index.json" ] \
  && ok "opt-mini: one model.safetensors, no index" || bad "opt-mini synth: $(tail -2 "$work/o.log")"
out=$(py layout "$work/o" "$opt" 1) && ok "opt layout (biases, positions + 2, tied head): $out" || bad "opt layout: $out"
out=$(py stats "$work/o" 0.02 0.02 0.02 0.01) && ok "opt values: $out" || bad "opt values: $out"

# the seed alone decides the values
"$zfold" synth "$llama" "$work/b" --seed 7 --shard-size 0.002 --tokens 4000 > /dev/null 2>&1
same=1
for f in "$work"/a/*; do cmp -s "$f" "$work/b/$(basename "$f")" || same=0; done
[ "$same" = 1 ] && [ "$(ls "$work/a")" = "$(ls "$work/b")" ] && ok "same seed: byte-identical files" \
  || bad "same seed gave different files"
"$zfold" synth "$llama" "$work/c" --seed 8 --shard-size 0.002 --tokens 4000 > /dev/null 2>&1
differ=1
for f in "$work"/a/*.safetensors "$work/a/tokens.bin"; do cmp -s "$f" "$work/c/$(basename "$f")" && differ=0; done
[ "$differ" = 1 ] && ok "another seed: every shard and tokens.bin differ" || bad "another seed gave an identical file"
"$zfold" synth "$fixtures/llama-mini" "$work/one" --seed 7 > /dev/null 2>&1   # a folder, default 5 GB shards
out=$(py same_values "$work/a" "$work/one") && [ -f "$work/one/model.safetensors" ] \
  && ok "same seed in one file (config by folder): $out" || bad "sharding changed the values: $out"
# rewriting a folder: the old index would shadow the new single file
"$zfold" synth "$llama" "$work/b" --seed 7 > /dev/null 2>&1
[ ! -e "$work/b/model.safetensors.index.json" ] && ok "rewritten as one file: the earlier index is gone" \
  || bad "an earlier index is left over"

# the pipeline runs on them, calibrated on the synthetic tokens
for m in a o; do
  cat > "$work/$m.yaml" <<YAML
model: $work/$m
output: $work/run-$m
method: zfold
bits: 3
calibration:
  file: $work/$m/tokens.bin
  windows: 2
  seq_len: 32
eval:
  files: []
YAML
  "$zfold" plan "$work/$m.yaml" --memory-only > "$work/plan-$m.log" 2>&1 && ok "plan on synthetic $m" \
    || bad "plan on synthetic $m: $(tail -2 "$work/plan-$m.log")"
  "$zfold" quantize "$work/$m.yaml" > "$work/q-$m.log" 2>&1 && "$zfold" inspect "$work/run-$m" > "$work/i-$m.log" 2>&1 \
    && ok "quantize on synthetic $m: $(grep -o 'ΔL .*' "$work/q-$m.log" | tail -1)" \
    || bad "quantize on synthetic $m: $(tail -3 "$work/q-$m.log" "$work/i-$m.log")"
done

# failures name the file
expect_fail() {  # WHAT RC GREP-PATTERN, after the command ran into $work/err.log with exit status $rc
  [ "$rc" = "$2" ] && grep -qF -- "$3" "$work/err.log" && ok "$1: exit $rc, $(grep -F -- "$3" "$work/err.log" | head -1)" \
    || bad "$1: exit $rc, expected $2 and '$3': $(cat "$work/err.log")"
}
sed 's/"model_type": "llama"/"model_type": "gpt2"/' "$llama" > "$work/gpt2.json"
"$zfold" synth "$work/gpt2.json" "$work/x" --seed 1 > "$work/err.log" 2>&1; rc=$?
expect_fail "unsupported model_type" 1 "$work/gpt2.json: key 'model_type': unsupported model type \"gpt2\""
"$zfold" synth "$work/nothere" "$work/x" --seed 1 > "$work/err.log" 2>&1; rc=$?
expect_fail "missing config" 1 "$work/nothere: cannot open"
"$zfold" synth "$work" "$work/x" --seed 1 > "$work/err.log" 2>&1; rc=$?
expect_fail "folder without config.json" 1 "$work/config.json: cannot open"
"$zfold" synth "$llama" "$work/a.log/sub" --seed 1 > "$work/err.log" 2>&1; rc=$?
expect_fail "output under a file" 1 "$work/a.log"
"$zfold" synth "$llama" "$work/x" > "$work/err.log" 2>&1; rc=$?
expect_fail "no --seed" 2 "--seed are required"
"$zfold" synth "$llama" "$work/x" --seed 1 --shard-size -1 > "$work/err.log" 2>&1; rc=$?
expect_fail "negative shard size" 2 "--shard-size '-1'"
# a full disk, as a 1 MB file size limit: the first shard's write fails and its temporary file is removed
(trap '' XFSZ; ulimit -f 1024; exec "$zfold" synth "$llama" "$work/full" --seed 1 --shard-size 0.002) > "$work/err.log" 2>&1
rc=$?
expect_fail "write failure" 1 "model-00001-of-00004.safetensors not written (its partial temporary file was removed)"
[ -z "$(ls "$work/full" | grep -v '^config.json$')" ] && ok "nothing left but config.json" \
  || bad "left after the failed write: $(ls "$work/full")"
finish
