#!/usr/bin/env bash
# Cloudlet's method on a Docker 28 engine (issue #18 experiments):
#   d28-restore-runc.sh ENGINE NAME RUNS [--leave-running]   (container NAME already running)
# Each run: `runc checkpoint` on the engine's runc state (EXEC_ROOT/runtime-runc/moby) into a
# directory of ours (final dump: the process is killed, as in a handoff), then the images are
# installed as src/engine/checkpoint-install.ts does for 20.10 (DATA_ROOT/containers/ID/
# checkpoints/NAME, pages-*.img staged in $XDG_RUNTIME_DIR/cloudlet-stage/ID-NAME behind relative
# links), then `docker start --checkpoint NAME`. Prints dump ms, start ms, state, counter.
set -uo pipefail
eng=$1; name=$2; runs=$3
lib=/var/lib/cl28x/$eng; run=/run/cl28x/$eng
export DOCKER_HOST=unix://$run/d.sock
ms() { echo $(( ($2 - $1) / 1000000 )); }
id=$(docker inspect -f '{{.Id}}' "$name") || exit 1
for k in $(seq 1 "$runs"); do
  c=r$(date +%s%N | cut -c8-13)$k
  img=$run/img-$name-$k; work=$run/work-$name-$k; rm -rf "$img" "$work"
  sleep 1; pre=$(docker logs "$name" 2>&1 | tail -1)
  s=$(date +%s%N)
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    runc --root "$run/exec/runtime-runc/moby" checkpoint --image-path "$img" --work-path "$work" "$id"
  rc1=$?; e=$(date +%s%N); td=$(ms $s $e)
  for _ in $(seq 1 50); do [ "$(docker inspect -f '{{.State.Status}}' "$name")" = exited ] && break; sleep 0.1; done
  cp="$lib/docker/containers/$id/checkpoints/$c"; stage="$run/xdg/cloudlet-stage/$id-$c"
  mkdir -p "$cp" "$stage"
  for f in "$img"/*; do
    b=$(basename "$f")
    case $b in pages-*.img) mv "$f" "$stage/$b"; ln -s "../cloudlet-stage/$id-$c/$b" "$cp/$b" ;; *) mv "$f" "$cp/$b" ;; esac
  done
  s=$(date +%s%N); err=$(docker start --checkpoint "$c" "$name" 2>&1); rc=$?; e=$(date +%s%N); ts=$(ms $s $e)
  first=$(docker logs "$name" 2>&1 | tail -1)
  sleep 0.6; st=$(docker inspect -f '{{.State.Status}}' "$name"); after=$(docker logs "$name" 2>&1 | tail -1)
  echo "run=$k dump_rc=$rc1 dump_ms=$td start_rc=$rc start_ms=$ts state=$st at_dump=$pre first=$first after=$after ${err:+err=$err}"
  rm -rf "$cp" "$stage" "$img" "$work"
  [ "$st" = running ] || docker start "$name" >/dev/null 2>&1
done
