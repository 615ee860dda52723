#!/usr/bin/env bash
# docs/config.md embeds the key table that `zfold help config` prints from the parser's own table: they must agree.
set -euo pipefail
zfold=$1
doc=${ZF_SOURCE_DIR:-$(dirname "$0")/../..}/docs/config.md
expected=$("$zfold" help config)
actual=$(sed -n '/<!-- keys:begin -->/,/<!-- keys:end -->/p' "$doc" | sed '1d;$d')
if [ "$expected" != "$actual" ]; then
  echo "docs/config.md is out of date; regenerate it with scripts/gen-config-docs.sh"
  diff <(echo "$expected") <(echo "$actual") || true
  echo "0 passed, 1 failed"
  exit 1
fi
echo "config_docs: docs/config.md matches the parser's table"
