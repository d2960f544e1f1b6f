#!/usr/bin/env bash
# The demo, from a fresh machine: set-up (idempotent), a lab of two cloudlets and a mobile
# user's namespace; an app provisioned on cloudlet a from an overlay (on its first request);
# the app runs in a network namespace holder of its own (src/network/netns-holder.ts);
# a client holding a raw TCP session and an HTTP keep-alive session to it; the user walks
# from a's cell to b's, the handoff policy moves the service to b live (same address, same
# connections); the report (timings, bytes, the gap the client saw); the lab is removed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  exec sudo -E bash "$0" "$@"
fi

bash scripts/setup.sh
cloudlet() { node dist/src/cli/main.js "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Whatever happens, the lab goes away at the end.
trap 'say "lab down"; cloudlet lab down' EXIT

say "lab up: 2 cloudlets + the user's namespace, links 100mbit / 5ms"
cloudlet lab up --cloudlets 2 --bandwidth 100mbit --latency 5ms

say "cloudlet nodes"
cloudlet nodes

say "the user moves from cell a to cell b; the service follows (progress, then the report)"
report=/var/lib/cloudlet/demo-handoff.json
cloudlet bench handoff --scenario mobility --netns-holder --json > "$report"
node -e '
  import("./dist/src/bench/handoff-report.js").then((m) => {
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    process.stdout.write(m.handoffReportText(r));
  });' "$report"
echo "full report (JSON): $report"
