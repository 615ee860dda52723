#!/usr/bin/env python3
"""An independent reader of GPTQ checkpoint folders (Python + numpy; safetensors parsed with the standard library).

It decodes qweight/qzeros with the unpacking arithmetic of AutoGPTQ's qlinear_cuda_old / GPTQModel's TorchQuantLinear
(shifts of int32 words by a table of offsets, masks; 3 bits as 32 values over 3 words; format "gptq" adds 1 to the
stored zeros), rebuilds every linear weight, and runs its own float64 forward of LLaMA or OPT.

  gptq_reader.py check FOLDER                  structure: names, dtypes, shapes, config fields; prints a summary
  gptq_reader.py ppl FOLDER TOKENS SEQ WINDOWS perplexity of the first WINDOWS windows of SEQ tokens (GPTQ protocol)
  gptq_reader.py dump FOLDER OUT.npz           the dequantized model as float32 arrays (for tests/gpu)
"""
import json
import math
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "I32": np.dtype("<i4"), "F64": np.dtype("<f8")}


def fail(msg):
    print("gptq_reader: " + msg, file=sys.stderr)
    sys.exit(1)


def read_safetensors(path):
    """name -> numpy array (BF16 widened to float32 exactly)"""
    data = open(path, "rb").read()
    if len(data) < 8:
        fail(f"{path}: shorter than the 8-byte header length")
    n = struct.unpack("<Q", data[:8])[0]
    if 8 + n > len(data):
        fail(f"{path}: header length {n} runs past the file")
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            if e.get("format") != "pt":
                fail(f"{path}: __metadata__.format is {e.get('format')!r}, transformers expects 'pt'")
            continue
        b, end = e["data_offsets"]
        raw = body[b:end]
        shape = tuple(e["shape"])
        if e["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif e["dtype"] in DTYPES:
            arr = np.frombuffer(raw, dtype=DTYPES[e["dtype"]])
        else:
            fail(f"{path}: tensor {name}: unexpected dtype {e['dtype']}")
        if arr.size != int(np.prod(shape)):
            fail(f"{path}: tensor {name}: {arr.size} values for shape {shape}")
        out[name] = (e["dtype"], arr.reshape(shape))
    return out


def read_folder(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(index):
        wm = json.load(open(index))["weight_map"]
        for fn in sorted(set(wm.values())):
            part = read_safetensors(os.path.join(folder, fn))
            for k in part:
                if wm.get(k) != fn:
                    fail(f"{fn}: tensor {k} is not mapped to this file in the index")
            tensors.update(part)
        missing = set(wm) - set(tensors)
        if missing:
            fail(f"index names tensors no file holds: {sorted(missing)[:3]}")
    else:
        tensors = read_safetensors(os.path.join(folder, "model.safetensors"))
    return tensors


# --- AutoGPTQ's unpacking (qlinear_cuda_old.py: wf shifts, masks, the 3-bit word triples) -------------------------

WF3 = np.array([[0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0],
                [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31],
                [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0]], dtype=np.int32)


def unpack_rows(words, bits):
    """words int32 [W, N] packed along axis 0 -> values [W*32/bits, N]"""
    maxq = (1 << bits) - 1
    if bits in (2, 4, 8):
        wf = np.arange(0, 32, bits, dtype=np.int32)
        v = (words[:, None, :] >> wf[None, :, None]) & maxq  # arithmetic shift on int32, as torch does
        return v.reshape(-1, words.shape[1])
    if bits != 3:
        fail(f"{bits} bits: AutoGPTQ unpacks 2, 3, 4 and 8")
    w = words.reshape(words.shape[0] // 3, 3, 1, words.shape[1])
    v = (w >> WF3[None, :, :, None]) & 0x7
    v[:, 0, 10] = (v[:, 0, 10] & 0x3) | ((v[:, 1, 0] << 2) & 0x4)
    v[:, 1, 11] = (v[:, 1, 11] & 0x1) | ((v[:, 2, 0] << 1) & 0x6)
    v = v & 0x7
    v = np.concatenate([v[:, 0, :11], v[:, 1, 1:12], v[:, 2, 1:11]], axis=1)
    return v.reshape(-1, words.shape[1])


def dequantize(qweight, qzeros, scales, g_idx, bits, v1):
    """W [out, in] float64 = (scales[g_idx] * (q - zeros[g_idx])).T"""
    q = unpack_rows(qweight, bits)                      # [in, out]
    z = unpack_rows(qzeros.T.copy(), bits).T            # [groups, out]
    if v1:
        z = z + 1                                       # the kernels' zeros + 1, no wrap
    s = scales.astype(np.float64)
    w = s[g_idx] * (q - z[g_idx]).astype(np.float64)
    return w.T


# --- the model ------------------------------------------------------------------------------------------------------

def layer_names(cfg):
    if cfg["model_type"] == "opt":
        p = "model.decoder.layers.{}."
        return p, ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"]
    p = "model.layers.{}."
    return p, ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
               "mlp.up_proj", "mlp.down_proj"]


def load(folder, check_only=False):
    cfg = json.load(open(os.path.join(folder, "config.json")))
    qc = cfg.get("quantization_config")
    if not qc or qc.get("quant_method") != "gptq":
        fail(f"{folder}/config.json: no gptq quantization_config")
    qc2 = json.load(open(os.path.join(folder, "quantize_config.json")))
    for k in ("bits", "group_size", "desc_act", "sym", "damp_percent", "true_sequential", "static_groups",
              "checkpoint_format"):
        if k not in qc or qc.get(k) != qc2.get(k):
            fail(f"quantization_config.{k} = {qc.get(k)!r}, quantize_config.json has {qc2.get(k)!r}")
    meta = qc.get("meta", {})
    for k in ("quantizer", "method", "config_hash"):
        if k not in meta:
            fail(f"quantization_config.meta has no {k}")
    bits, gs, v1 = qc["bits"], qc["group_size"], qc["checkpoint_format"] == "gptq"
    want_dt = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}[cfg["torch_dtype"]]
    t = read_folder(folder)
    opt = cfg["model_type"] == "opt"
    d = cfg["hidden_size"]
    inner = cfg["ffn_dim"] if opt else cfg["intermediate_size"]
    prefix, lins = layer_names(cfg)
    W = {}
    used = set()
    for i in range(cfg["num_hidden_layers"]):
        for ln in lins:
            m = prefix.format(i) + ln
            qw, qz, sc, gi = (t.get(m + s) for s in (".qweight", ".qzeros", ".scales", ".g_idx"))
            if qw is None or qz is None or sc is None or gi is None:
                fail(f"{m}: qweight, qzeros, scales and g_idx expected")
            if qw[0] != "I32" or qz[0] != "I32" or gi[0] != "I32" or sc[0] != want_dt:
                fail(f"{m}: dtypes {qw[0]}, {qz[0]}, {sc[0]}, {gi[0]}; expected I32, I32, {want_dt}, I32")
            n_in, out = qw[1].shape[0] * 32 // bits, qw[1].shape[1]
            groups = 1 if gs == -1 else math.ceil(n_in / gs)
            if n_in % 32 or qz[1].shape != (groups, out * bits // 32) or sc[1].shape != (groups, out) \
                    or gi[1].shape != (n_in,):
                fail(f"{m}: shapes qweight {qw[1].shape}, qzeros {qz[1].shape}, scales {sc[1].shape}, "
                     f"g_idx {gi[1].shape} do not agree for {bits} bits, group size {gs}")
            g = gi[1].astype(np.int64)
            if g.min() < 0 or g.max() >= groups:
                fail(f"{m}: g_idx outside [0, {groups})")
            if not qc["desc_act"] and not np.array_equal(g, np.arange(n_in) // (gs if gs > 0 else n_in)):
                fail(f"{m}: desc_act is false but g_idx is not k // group_size")
            used.update(m + s for s in (".qweight", ".qzeros", ".scales", ".g_idx"))
            if not check_only:
                W[m + ".weight"] = dequantize(qw[1], qz[1], sc[1], g, bits, v1)
            if m + ".bias" in t:
                W[m + ".bias"] = t[m + ".bias"][1].astype(np.float64)
                used.add(m + ".bias")
    for k, (dt, a) in t.items():
        if k in used:
            continue
        if dt != want_dt:
            fail(f"{k}: dtype {dt}, expected {want_dt} (torch_dtype)")
        W[k] = a.astype(np.float64)
    return cfg, qc, W, inner


def rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def layernorm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def attention(q, k, v, nh, nkv, hd):
    T = q.shape[0]
    q = q.reshape(T, nh, hd).transpose(1, 0, 2)
    k = np.repeat(k.reshape(T, nkv, hd).transpose(1, 0, 2), nh // nkv, axis=0)
    v = np.repeat(v.reshape(T, nkv, hd).transpose(1, 0, 2), nh // nkv, axis=0)
    a = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
    a = a + np.triu(np.full((T, T), -np.inf), 1)
    a = np.exp(a - a.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    return (a @ v).transpose(1, 0, 2).reshape(T, nh * hd)


def lin(W, x, m):
    y = x @ W[m + ".weight"].T
    return y + W[m + ".bias"] if m + ".bias" in W else y


def forward(cfg, W, ids):
    """logits [T, vocab] of one window, float64"""
    T, d = len(ids), cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    prefix, lins = layer_names(cfg)
    if cfg["model_type"] == "opt":
        x = W["model.decoder.embed_tokens.weight"][ids] + W["model.decoder.embed_positions.weight"][np.arange(T) + 2]
        for i in range(cfg["num_hidden_layers"]):
            p = prefix.format(i)
            h = layernorm(x, W[p + "self_attn_layer_norm.weight"], W[p + "self_attn_layer_norm.bias"])
            a = attention(lin(W, h, p + lins[0]), lin(W, h, p + lins[1]), lin(W, h, p + lins[2]), nh, nh, d // nh)
            x = x + lin(W, a, p + lins[3])
            h = layernorm(x, W[p + "final_layer_norm.weight"], W[p + "final_layer_norm.bias"])
            x = x + lin(W, np.maximum(lin(W, h, p + "fc1"), 0), p + "fc2")
        x = layernorm(x, W["model.decoder.final_layer_norm.weight"], W["model.decoder.final_layer_norm.bias"])
        head = W.get("lm_head.weight", W["model.decoder.embed_tokens.weight"])
        return x @ head.T
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim") or d // nh
    eps = cfg.get("rms_norm_eps", 1e-6)
    inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (np.arange(0, hd, 2) / hd))
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(z, n):
        z = z.reshape(T, n, hd)
        rot = np.concatenate([-z[..., hd // 2:], z[..., :hd // 2]], -1)
        return (z * cos[:, None, :] + rot * sin[:, None, :]).reshape(T, n * hd)

    x = W["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = prefix.format(i)
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q, k, v = (lin(W, h, p + lins[j]) for j in range(3))
        x = x + lin(W, attention(rope(q, nh), rope(k, nkv), v, nh, nkv, hd), p + lins[3])
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g, u = lin(W, h, p + lins[4]), lin(W, h, p + lins[5])
        x = x + lin(W, g / (1 + np.exp(-g)) * u, p + lins[6])
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ head.T


def read_tokens(path):
    raw = open(path, "rb").read()
    head = np.frombuffer(raw[:1024], dtype="<i4")
    if head[0] != 20240520 or len(raw) != 1024 + 2 * int(head[2]):
        fail(f"{path}: not an llm.c token file")
    return np.frombuffer(raw[1024:], dtype="<u2").astype(np.int64)


def perplexity(cfg, W, tokens, seq, windows):
    n = min(len(tokens) // seq, windows)
    nll, count = 0.0, 0
    for w in range(n):
        ids = tokens[w * seq:(w + 1) * seq]
        logits = forward(cfg, W, ids)[:-1]
        m = logits.max(-1, keepdims=True)
        lse = (m[:, 0] + np.log(np.exp(logits - m).sum(-1)))
        nll += float((lse - logits[np.arange(seq - 1), ids[1:]]).sum())
        count += seq - 1
    return math.exp(nll / count)


def main(argv):
    if len(argv) >= 2 and argv[0] == "check":
        cfg, qc, W, inner = load(argv[1], check_only=True)
        print(json.dumps({"model_type": cfg["model_type"], "bits": qc["bits"], "group_size": qc["group_size"],
                          "checkpoint_format": qc["checkpoint_format"], "inner": inner,
                          "torch_dtype": cfg["torch_dtype"]}))
    elif len(argv) == 5 and argv[0] == "ppl":
        cfg, qc, W, _ = load(argv[1])
        print("%.10g" % perplexity(cfg, W, read_tokens(argv[2]), int(argv[3]), int(argv[4])))
    elif len(argv) == 3 and argv[0] == "dump":
        cfg, qc, W, _ = load(argv[1])
        np.savez(argv[2], **{k: v.astype(np.float32) for k, v in W.items()})
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
