#!/usr/bin/env bash
# Exports of the three fixtures (Z-FOLD 4-bit per channel, float32 scales) loaded into transformers' own
# LlamaForCausalLM / OPTForCausalLM (tests/export/hf_compare.py): logits against the independent reader's forward,
# perplexity against zfold's run. Skips (77) without torch + transformers or without a CUDA device.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
source "$root/tests/export/cases.sh"
"$py" -c "import torch, transformers" 2>/dev/null || { echo "skipped: no torch + transformers for $py"; exit 77; }
for model in stories260k llama-mini opt-mini; do
  dir=$work/$model
  case_yaml "$fixtures/$model" zfold 4 -1 "$dir/run" > "$work/$model.yaml"
  "$zfold" quantize "$work/$model.yaml" > "$work/$model.log" 2>&1 || { bad "$model: quantize: $(tail -2 "$work/$model.log")"; continue; }
  "$zfold" export "$dir/run" "$dir/exp" --dtype float32 > "$work/$model.export.log" 2>&1 \
    || { bad "$model: export: $(tail -1 "$work/$model.export.log")"; continue; }
  out=$("$py" "$root/tests/export/hf_compare.py" "$dir/exp" "$(eval_tokens "$fixtures/$model")" 256 8 \
        "$(report_ppl "$dir/run")" 2>&1)
  rc=$?
  echo "$out"
  [ $rc -eq 77 ] && exit 77
  [ $rc -eq 0 ] && ok "$model: transformers agrees" || bad "$model: transformers disagrees"
done
finish
