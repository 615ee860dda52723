#!/usr/bin/env bash
# Regenerates the key table in docs/config.md from `zfold help config` (the parser's own table).
set -euo pipefail
cd "$(dirname "$0")/.."
zfold=${1:-build/zfold}
table=$("$zfold" help config)
python3 - "$table" <<'PY'
import sys, re
table = sys.argv[1]
p = "docs/config.md"
s = open(p).read()
s = re.sub(r"<!-- keys:begin -->.*<!-- keys:end -->", "<!-- keys:begin -->\n" + table + "\n<!-- keys:end -->", s, flags=re.S)
open(p, "w").write(s)
PY
echo "docs/config.md updated"
