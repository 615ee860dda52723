#!/usr/bin/env python3
"""transformers' own LlamaForCausalLM / OPTForCausalLM on an exported GPTQ folder's config and dequantized weights.

  hf_compare.py FOLDER TOKENS SEQ WINDOWS RUN_PPL

Dequantizes FOLDER with gptq_reader.py (AutoGPTQ's unpacking), builds the transformers model from the folder's
config.json (quantization_config removed, float32, eager attention), loads the weights and checks
  - its logits on the first window against gptq_reader's float64 forward (max abs diff <= 2e-3),
  - its perplexity (GPTQ protocol) against RUN_PPL, zfold's own forward of the run (rel. diff <= 1e-4),
  - where optimum + gptqmodel are installed, the folder loaded by from_pretrained through its GPTQ kernels
    (rel. diff of perplexity <= 1e-2: the kernels compute in float16).
Exit 77 when torch or transformers is missing, or no CUDA device is visible (ZF_EXPORT_TORCH_CPU=1 allows the CPU).
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gptq_reader  # noqa: E402

try:
    import torch
    import transformers
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)


def ppl_of(model, tokens, seq, windows, device):
    nll, count = 0.0, 0
    n = min(len(tokens) // seq, windows)
    with torch.no_grad():
        for w in range(n):
            ids = torch.tensor(tokens[w * seq:(w + 1) * seq], device=device)[None]
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
            nll -= float(logp[torch.arange(seq - 1, device=device), ids[0, 1:]].sum())
            count += seq - 1
    return math.exp(nll / count)


def main(folder, tokens_path, seq, windows, run_ppl):
    if torch.cuda.is_available():
        device = "cuda"
    elif os.environ.get("ZF_EXPORT_TORCH_CPU") == "1":
        device = "cpu"
    else:
        print("skipped: no CUDA device")
        sys.exit(77)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg, qc, W, _ = gptq_reader.load(folder)
    tokens = gptq_reader.read_tokens(tokens_path)
    plain = dict(cfg)
    plain.pop("quantization_config")
    plain["torch_dtype"] = "float32"
    conf = transformers.AutoConfig.for_model(plain.pop("model_type"), **plain)
    model = transformers.AutoModelForCausalLM.from_config(conf, attn_implementation="eager", torch_dtype=torch.float32)
    state = {k: torch.tensor(v, dtype=torch.float32) for k, v in W.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and conf.tie_word_embeddings)]
    if missing or unexpected:
        gptq_reader.fail(f"state dict: missing {missing[:4]}, unexpected {unexpected[:4]}")
    model.tie_weights()
    model = model.to(device).eval()
    ids = tokens[:seq]
    with torch.no_grad():
        got = model(torch.tensor(ids, device=device)[None]).logits[0].double().cpu().numpy()
    ref = gptq_reader.forward(cfg, W, ids)
    diff = float(abs(got - ref).max())
    print(f"{type(model).__name__}: logits of window 0 vs the reader's float64 forward: max abs diff {diff:.3g} "
          f"(largest logit {float(abs(ref).max()):.3g})")
    ok = diff <= 2e-3
    p = ppl_of(model, tokens, seq, windows, device)
    rel = abs(p - run_ppl) / run_ppl
    print(f"{type(model).__name__}: perplexity {p:.8g}, zfold's run {run_ppl:.8g} (rel. diff {rel:.3g})")
    ok = ok and rel <= 1e-4
    try:
        import gptqmodel  # noqa: F401
        import optimum  # noqa: F401
    except ImportError:
        print("gptqmodel/optimum not installed: the GPTQ-kernel load is not checked")
    else:
        q = transformers.AutoModelForCausalLM.from_pretrained(folder, device_map=device)
        pq = ppl_of(q, tokens, seq, windows, device)
        relq = abs(pq - run_ppl) / run_ppl
        print(f"from_pretrained with GPTQ kernels: perplexity {pq:.8g} (rel. diff {relq:.3g})")
        ok = ok and relq <= 1e-2
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
