#!/usr/bin/env python3
"""Projected wall time of a whole run on H100s from rates measured on one H100 (docs/gpu.md) and the pipeline's
schedule: per block, the capture and quantized forwards of each rank's windows, the Hessian reduction, the
busiest owner's (or team member's) quantization, the packed-code broadcast. Prints a markdown table.
usage: bench/scale/project.py [--link-gbs 25]"""
import json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
# One H100 80GB HBM3 (docs/gpu.md): block forward with bf16 weights, with and without the fp64 Hessian capture,
# in GFLOP/s of 2·tokens·params + 2·seq²·hidden; Z-FOLD 3-4 bit on [8192 x 28672] (LLaMA-2-70B down_proj) in
# 8.44 s wall, its flops counted as 2·out·in² per ALS GEMM (13 GEMMs at 6 ALS iterations) + OPTQ 2·out·in² + in³.
FWD_CAPTURE_GFLOPS = 17327.0
FWD_GFLOPS = 20726.0
ZFOLD_REF = (8192, 28672, 8.44)


def zfold_flops(out, inp, gemms=13):
    return (gemms + 1) * 2.0 * out * inp * inp + inp ** 3


def zfold_seconds(out, inp, k=1):
    """One team member's seconds when the group's rows are split k ways (the factor is every member's)."""
    o, i, s = ZFOLD_REF
    return s * zfold_flops(-(-out // k), inp) / zfold_flops(o, i)


def team_sizes(groups, ranks):
    """The pipeline's teams (coordinator/parts.c): a rank per group, then each spare rank to the team whose share
    costs most while that cuts its cost by at least 1 %."""
    k = [1] * len(groups)
    for _ in range(ranks - len(groups)):
        g = max(range(len(groups)), key=lambda j: zfold_seconds(*groups[j], k[j]))
        if zfold_seconds(*groups[g], k[g] + 1) > 0.99 * zfold_seconds(*groups[g], k[g]):
            break
        k[g] += 1
    return k


def shapes(cfg):
    d = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", heads)
    hd = d // heads
    if cfg["model_type"] == "opt":
        ff = cfg["ffn_dim"]
        groups = [(d + 2 * kv * hd, d), (d, heads * hd), (ff, d), (d, ff)]
    else:
        ff = cfg["intermediate_size"]
        groups = [(heads * hd + 2 * kv * hd, d), (d, heads * hd), (2 * ff, d), (d, ff)]
    return d, groups, cfg["num_hidden_layers"]


def project(name, ranks, schedule, windows=128, seq=2048, link_gbs=25.0, bits=3):
    cfg = json.load(open(os.path.join(HERE, name)))
    d, groups, nb = shapes(cfg)
    params = sum(o * i for o, i in groups)
    win_flops = 2.0 * seq * params + 2.0 * seq * seq * d
    wpr = -(-windows // ranks)
    hess_bytes = 8.0 * sum(i * i for _, i in groups)
    # a reduction moves about its message size over each rank's link (pipelined tree/ring)
    t_red = hess_bytes / (link_gbs * 1e9) if ranks > 1 else 0.0
    t_bcast = params * bits / 8.0 / (link_gbs * 1e9) if ranks > 1 else 0.0
    unit = [zfold_seconds(o, i) for o, i in groups]
    if schedule == "sequential":
        t_fwd = wpr * win_flops * (1 / (FWD_CAPTURE_GFLOPS * 1e9) + 1 / (FWD_GFLOPS * 1e9))
        # up to four ranks: owners (all four groups on one rank when ranks == 1); more: teams split the rows,
        # each member after its owner's fp32 H
        t_q = sum(unit) if ranks == 1 else max(unit) if ranks == 4 else sum(sorted(unit)[-2:])
        if ranks > 4:
            k = team_sizes(groups, ranks)
            t_q = max(zfold_seconds(o, i, kk) + (4.0 * i * i / (link_gbs * 1e9) if kk > 1 else 0.0)
                      for (o, i), kk in zip(groups, k))
        per_block = t_fwd + t_red + t_q + t_bcast
        return nb, per_block, per_block * nb, t_fwd, t_q
    # parallel: one capturing pass, then every unit on the least loaded rank, largest first
    t_fwd = wpr * win_flops / (FWD_CAPTURE_GFLOPS * 1e9)
    load = [0.0] * ranks
    for u in sorted(unit * nb, reverse=True):
        load[load.index(min(load))] += u
    t_q = max(load)
    total = nb * (t_fwd + t_red + t_bcast) + t_q
    return nb, total / nb, total, t_fwd, t_q


def main():
    link = 25.0
    if "--link-gbs" in sys.argv:
        link = float(sys.argv[sys.argv.index("--link-gbs") + 1])
    print("| model | H100s | schedule | blocks | forward s/block | busiest quantization s | s/block | total min |")
    print("|---|---|---|---|---|---|---|---|")
    for name, ranks, sched in [("llama3-8b.json", 1, "sequential"), ("llama2-70b.json", 8, "sequential"),
                               ("llama2-70b.json", 64, "parallel"), ("llama2-70b.json", 64, "sequential"), ("opt-175b.json", 64, "sequential"),
                               ("opt-175b.json", 64, "parallel")]:
        nb, pb, tot, tf, tq = project(name, ranks, sched, link_gbs=link)
        print(f"| {name[:-5]} | {ranks} | {sched} | {nb} | {tf:.2f} | {tq:.1f}{' (all units)' if sched == 'parallel' else ''} "
              f"| {pb:.1f} | {tot / 60:.1f} |")


if __name__ == "__main__":
    main()
