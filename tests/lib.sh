# Shared set-up of the shell tests (sourced, not a test itself): the zfold binary ($1), the fixtures, a scratch
# folder removed on exit, the ok/bad/finish tally, and run configs on the fixtures.
zfold=$1
root=${ZF_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
fixtures=${ZF_FIXTURES:-$root/../shared/fixtures}
work=$(mktemp -d "${TMPDIR:-/tmp}/zftest.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAILED: $*"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }
# run_yaml MODEL_DIR WINDOWS SEQ_LEN [METHOD]: a 3-bit run config (stdout) into $work/out, calibrated on
# wikitext2-valid and evaluated on 16 windows of tinystories
run_yaml() {
  cat <<YAML
model: $1
output: $work/out
method: ${4:-zfold}
bits: 3
calibration:
  file: $fixtures/data/wikitext2-valid.tok512.bin
  windows: $2
  seq_len: $3
eval:
  files: [$fixtures/data/tinystories.tok512.bin]
  max_windows: 16
YAML
}
