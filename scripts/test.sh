#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up (idempotent), build, unit and
# integration tests. Integration tests start their own lab (namespaces, Docker engines,
# cloudletd) under a test-only prefix and remove it, even when they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  exec sudo -E bash "$0" "$@"
fi

bash scripts/setup.sh

# The code's own rules before the tests: layering, import cycles, typescript-eslint (eslint.config.js).
npm run --silent lint

# A lab of its own for the tests, apart from a demo lab that may be up.
export CLOUDLET_LAB_DIR=/var/lib/cloudlet/test-lab
export CLOUDLET_LAB_RUN_DIR=/run/cloudlet-test-lab
export CLOUDLET_LAB_PREFIX=cltest-

# The suite runs on the default engine (docker20); test/integration/engine-kind.test.ts also hands
# off and synthesizes on labs of these kinds (engines.test.ts: 20.10 <-> 28, engines-containerd.test.ts:
# the containerd image store), within a few minutes of the suite's time.
export CLOUDLET_TEST_ENGINES=${CLOUDLET_TEST_ENGINES:-docker28}

# Whatever an interrupted earlier run left behind goes first (no-op when nothing is there).
node dist/src/cli/main.js lab down >/dev/null

status=0
node --test --test-concurrency=1 --test-timeout=900000 \
  dist/test/unit/*.test.js dist/test/integration/*.test.js || status=$?

# Tests clean up after themselves; this catches a test process that was killed.
node dist/src/cli/main.js lab down >/dev/null || status=1
exit $status
