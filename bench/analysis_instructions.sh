#!/usr/bin/env bash
# Instructions per packet the analysis adds to the packet path's Python code,
# counted by callgrind (repeatable whatever else the machine does).
# Each variant runs for S and 2S seconds of traffic; the difference divided by
# the extra packets removes the setup. Usage: bench/analysis_instructions.sh [SESSIONS] [S]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$(dirname "$here")/.venv/bin/python}
n=${1:-100}; s=${2:-1}
count() {  # variant seconds -> total instructions
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$py" "$here/analysis_replay.py" "$1" "$n" "$2" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
packets=$(python3 -c "print(int($s * 50) * 2 * $n)")
for v in off on; do
  a=$(count $v "$s"); b=$(count $v "$(python3 -c "print(2 * $s)")")
  echo "$v $(python3 -c "print(round(($b - $a) / $packets))") instructions/packet"
done
