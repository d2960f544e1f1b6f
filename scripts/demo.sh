#!/usr/bin/env bash
# The demo, from a fresh machine: set-up (idempotent), a lab of two cloudlets, a container
# on each, the cloudlets as the CLI sees them, a live migration of a running stateful
# service from a to b with its report, then the lab is removed again.
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

say "lab up: 2 cloudlets + client, links 100mbit / 5ms"
cloudlet lab up --cloudlets 2 --bandwidth 100mbit --latency 5ms

say "a container on each cloudlet (through each cloudlet's own Docker engine)"
for node in a b; do
  sock=$(cloudlet lab status --json | node -e '
    const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
    process.stdout.write(s.cloudlets.find((c) => c.name === process.argv[1]).engineSocket);' "$node")
  DOCKER_HOST="unix://$sock" docker run -d --name "hello-$node" --network none cloudlet/busybox:1 \
    sh -c "i=0; while true; do i=\$((i+1)); echo \$i > /tmp/counter; sleep 1; done" >/dev/null
  echo "started hello-$node on cloudlet $node"
done

say "cloudlet nodes"
cloudlet nodes
for node in a b; do
  say "cloudlet ps --node $node"
  cloudlet ps --node "$node"
done

say "link a -> b throughput"
cloudlet lab measure --from a --to b --bytes 24M

say "a stateful Node.js service (64 MiB of state) on a; live migration a -> b"
sock_a=$(cloudlet lab status --json | node -e '
  const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
  process.stdout.write(s.cloudlets.find((c) => c.name === "a").engineSocket);')
script=$(node -e 'import("./dist/src/workloads/stateful-service.js").then((m) => process.stdout.write(m.STATEFUL_SERVICE_SCRIPT))')
DOCKER_HOST="unix://$sock_a" docker run -d --name svc --network none -e STATE_MB=64 -e DIRTY_PAGES_PER_SEC=200 \
  cloudlet/node:20 node -e "$script" >/dev/null
sleep 3
DOCKER_HOST="unix://$sock_a" docker exec svc wget -qO- http://127.0.0.1:8080/ && echo
cloudlet migrate svc --from a --to b

say "the service on b, with its counter"
sock_b=$(cloudlet lab status --json | node -e '
  const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
  process.stdout.write(s.cloudlets.find((c) => c.name === "b").engineSocket);')
DOCKER_HOST="unix://$sock_b" docker exec svc wget -qO- http://127.0.0.1:8080/ && echo
cloudlet ps --node b
