#!/usr/bin/env bash
# Start/stop one Docker 28 engine in a network namespace of its own (issue #18 experiments).
#   d28-engine.sh up NAME | down NAME | env NAME
# Prefix cl28x- for the namespace, /var/lib/cl28x/NAME and /run/cl28x/NAME for its files.
# Debian 12's runc 1.1.5 first in PATH (runc 1.3.6 via the private loader cannot start
# containers, see docs/engines-docker28.md), then the prefix's dockerd/containerd/shim, then
# /usr/local/sbin (the CRIU 4.2.1 wrapper).
set -euo pipefail
cmd=${1:?up|down|env}; name=${2:?name}
P=${CLOUDLET_DOCKER28_PREFIX:-/opt/cloudlet/docker28}
ns=cl28x-$name; lib=/var/lib/cl28x/$name; run=/run/cl28x/$name
sock=$run/d.sock
case $cmd in
env) echo "export DOCKER_HOST=unix://$sock" ;;
up)
  [ -e /run/netns/$ns ] || { ip netns add "$ns"; ip -n "$ns" link set lo up; }
  mkdir -p "$lib/docker" "$run/exec" "$run/xdg" "$run/bin" "$lib/home"
  ln -sf /usr/sbin/runc "$run/bin/runc"
  echo '{}' > "$run/daemon.json"
  PATH="$run/bin:$P/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  XDG_RUNTIME_DIR=$run/xdg HOME=$lib/home \
    setsid nsenter --net=/run/netns/$ns dockerd --data-root "$lib/docker" --exec-root "$run/exec" \
      -H "unix://$sock" --pidfile "$run/d.pid" --config-file "$run/daemon.json" \
      --cgroup-parent "$ns" --experimental ${D28_EXTRA:-} >"$lib/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 100); do
    DOCKER_HOST=unix://$sock docker version --format '{{.Server.Version}}' 2>/dev/null && break
    sleep 0.2
  done
  echo "pid $(cat $run/d.pid)"
  ;;
down)
  export DOCKER_HOST=unix://$sock
  ids=$(docker ps -aq 2>/dev/null || true)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  if [ -f "$run/d.pid" ]; then
    pid=$(cat "$run/d.pid")
    if grep -q "$lib/docker" /proc/$pid/cmdline 2>/dev/null; then
      kill "$pid"; for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
  fi
  # leftover containerd/shims of THIS engine: by command line naming its exec root
  for p in $(ls /proc | grep -E '^[0-9]+$'); do
    if { tr "\0" " " < /proc/$p/cmdline; } 2>/dev/null | grep -q "$run/exec"; then kill "$p" 2>/dev/null || true; fi
  done
  sleep 0.5
  grep " $lib\| $run" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" || true; done || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$lib" "$run"
  for c in /sys/fs/cgroup/*/"$ns"; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true; done
  ;;
esac
