#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short time each.
# usage: scripts/fuzz.sh [fuzztime]   (default 5s)
set -euo pipefail
cd "$(dirname "$0")/.."
t="${1:-5s}"
fail=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    echo "== fuzz ./$dir $target ($t)"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$t" -fuzzminimizetime 1s "./$dir" >/tmp/parley-fuzz.$$ 2>&1; then
      cat /tmp/parley-fuzz.$$; fail=1
    else
      tail -1 /tmp/parley-fuzz.$$
    fi
  done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort)
rm -f /tmp/parley-fuzz.$$
exit $fail
