#!/usr/bin/env bash
# Every fixture × 2/3/4/8 bits × per channel (Z-FOLD) and group 128 (OPTQ): exports in formats gptq and gptq_v2 read
# back by the independent reader within 1e-4 of the run's perplexity, and the float16 rounding's perplexity change.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
source "$root/tests/export/cases.sh"
rows=""
for model in stories260k llama-mini opt-mini; do
  for bits in 2 3 4 8; do
    check_case "$model" zfold "$bits" -1
    check_case "$model" optq "$bits" 128
  done
done
echo
echo "| model | bits | group | method | run ppl | reader rel. diff (gptq, gptq_v2; float32) | zero 0 shifted | float16 ppl | change |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s' "$rows"
finish
