#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short while each.
# usage: scripts/fuzz.sh [fuzztime]   (default 100000x)
#
# The default is a count of inputs, not a duration: with a duration, Go 1.26's
# fuzz coordinator sets a context deadline and can report that deadline as a
# bare "context deadline exceeded" failure although no input failed
# (golang/go#75804, fixed in Go 1.27). A count sets no deadline, so that race
# cannot happen; it also makes CI do the same work on a slow or busy machine.
set -euo pipefail
cd "$(dirname "$0")/.."
t="${1:-100000x}"
fail=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    echo "== fuzz ./$dir $target ($t)"
    for attempt in 1 2 3; do
      if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$t" -fuzzminimizetime 1s "./$dir" >/tmp/parley-fuzz.$$ 2>&1; then
        tail -1 /tmp/parley-fuzz.$$
        break
      fi
      # With a duration (fuzztime like 30s) the coordinator race above can
      # still fail a target with a bare "context deadline exceeded": no input
      # failed and none was written. Retry that up to twice; any real failure
      # (a failing input, a panic, a t.Error) fails at once.
      if [ "$attempt" -lt 3 ] && grep -q 'context deadline exceeded' /tmp/parley-fuzz.$$ &&
         ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' /tmp/parley-fuzz.$$; then
        echo "   (fuzz coordinator deadline race, golang/go#75804: retrying)"
        continue
      fi
      cat /tmp/parley-fuzz.$$; fail=1
      break
    done
  done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort)
rm -f /tmp/parley-fuzz.$$
exit $fail
