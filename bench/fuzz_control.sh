#!/usr/bin/env bash
# The long fuzz campaign of the control side (fuzz/control_fuzz.py): RUNS
# inputs (default one million) through the parser, the dispatcher over a real
# relay, and the stream framing. Prints libFuzzer's summary; exits non-zero if
# an input crashed, hung (-timeout) or leaked. New corpus entries go to
# bench/out/fuzz-control-corpus (not committed); crash files to bench/out/.
# Usage: bench/fuzz_control.sh [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
out=${BENCH_OUT:-$here/out}
runs=${1:-1000000}
mkdir -p "$out/fuzz-control-corpus"
python=${PYTHON:-$top/.venv/bin/python}
start=$(date +%s)
status=0
"$python" "$top/fuzz/control_fuzz.py" -runs="$runs" -max_len=12000 -timeout=10 \
  -print_final_stats=1 -artifact_prefix="$out/" \
  "$out/fuzz-control-corpus" "$top/fuzz/corpus/control" 2>"$out/fuzz-control.log" || status=$?
end=$(date +%s)
grep -E "INITED|DONE|^Done|^stat::|ERROR|Error|crash-|timeout-|leak-" "$out/fuzz-control.log" || true
echo "wall seconds: $((end - start)); exit status: $status; corpus: $(ls "$out/fuzz-control-corpus" | wc -l) new inputs"
exit $status
