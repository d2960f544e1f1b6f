#!/usr/bin/env bash
# One case of the Docker 28 restore experiments with Docker's own checkpoint path:
#   d28-restore-docker.sh NAME RUNS NETWORK_ARGS...   (DOCKER_HOST set to the engine)
# Runs the busybox counter as NAME with NETWORK_ARGS, then RUNS times:
#   docker checkpoint create --leave-running NAME cK; docker stop -t0; docker start --checkpoint cK
# and prints one line per run: create ms, start ms, rc, state, counter before/after.
set -uo pipefail
name=$1; runs=$2; shift 2
ms() { echo $(( ($2 - $1) / 1000000 )); }
docker run -d --name "$name" "$@" cloudlet/busybox:1 \
  sh -c 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done' >/dev/null || exit 1
sleep 1
for k in $(seq 1 "$runs"); do
  s=$(date +%s%N); docker checkpoint create --leave-running "$name" "c$k" >/dev/null; rc1=$?; e=$(date +%s%N); tc=$(ms $s $e)
  docker stop -t0 "$name" >/dev/null; before=$(docker logs "$name" 2>&1 | tail -1)
  s=$(date +%s%N); err=$(docker start --checkpoint "c$k" "$name" 2>&1); rc=$?; e=$(date +%s%N); ts=$(ms $s $e)
  sleep 0.6; st=$(docker inspect -f '{{.State.Status}}' "$name"); after=$(docker logs "$name" 2>&1 | tail -1)
  echo "run=$k create_rc=$rc1 create_ms=$tc start_rc=$rc start_ms=$ts state=$st before=$before after=$after ${err:+err=$err}"
  [ "$st" = running ] || docker start "$name" >/dev/null 2>&1
  sleep 0.5
done
