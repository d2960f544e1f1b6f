#!/bin/bash
cd /work/main
echo "start $(date -u +%FT%TZ) $(uptime) commit $(git rev-parse --short HEAD)"
for i in 1 2 3 4 5 6 7 8 9 10; do
  node --test --test-concurrency=1 --test-timeout=900000 dist/test/integration/handoff.test.js > /tmp/runs/handoff10-run$i.log 2>&1
  rc=$?
  echo "run $i rc=$rc $(grep -E '^# (pass|fail)' /tmp/runs/handoff10-run$i.log | tr '\n' ' ') $(grep -oE 'client gap [0-9.]+ ms <= downtime [0-9]+ \+ 300|gap [0-9.]+ ms' /tmp/runs/handoff10-run$i.log | head -3 | tr '\n' ' ')"
  [ $rc -ne 0 ] && break
done
echo "end $(date -u +%FT%TZ) $(uptime)"
