#!/usr/bin/env bash
# Idempotent install of Docker 28 + containerd 2 into a private prefix (issue #18).
#   PREFIX (default /opt/cloudlet/docker28) gets, from Debian's own packages:
#     docker.io    28.5.2 : dockerd, docker (CLI), docker-proxy, docker-init
#     containerd   2.1.9  : containerd, containerd-shim-runc-v2, ctr
#     runc         1.3.6  : needs glibc >= 2.38, so it runs through the prefix's own loader
#                           (trixie's libc6 + libseccomp2), like the CRIU wrapper of setup.sh
#   PREFIX/bin holds what an engine puts first in its PATH: wrappers for runc (1.3.6 via the
#   private loader) and plain links to dockerd, containerd, the shim, docker-proxy, docker.
# The system's Docker 20.10 (/usr/bin/dockerd, /usr/sbin/runc) is never touched: nothing is
# installed through dpkg, packages are only downloaded (private apt state) and extracted with
# `dpkg-deb -x`. No registry host is written here: the mirror is read from apt's configuration.
# Called by setup.sh. `cloudlet lab up --engine docker28` starts engines from PREFIX/bin, with
# Debian 12's runc 1.1.5 before the prefix's runc in their PATH (docs/engines-docker28.md).
set -euo pipefail

log() { printf '[setup-docker28] %s\n' "$*" >&2; }
die() { printf '[setup-docker28] error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

PREFIX=${CLOUDLET_DOCKER28_PREFIX:-/opt/cloudlet/docker28}
WANT_DOCKER=${CLOUDLET_DOCKER28_VERSION:-28.5.2}
WANT_CONTAINERD=${CLOUDLET_CONTAINERD2_VERSION:-2.1.9}
WANT_RUNC=${CLOUDLET_RUNC13_VERSION:-1.3.6}

# Output captured first: `cmd | grep -q` under pipefail fails when grep exits before cmd
# has written everything (SIGPIPE), which made a fresh install report a wrong version.
reports() { local out; out=$("$@" 2>/dev/null) || return 1; printf '%s\n' "$out"; }
installed_ok() {
  [ -x "$PREFIX/bin/dockerd" ] && [ -x "$PREFIX/bin/containerd" ] && [ -x "$PREFIX/bin/runc" ] \
    && [ -x "$PREFIX/bin/containerd-shim-runc-v2" ] && [ -x "$PREFIX/bin/docker-proxy" ] \
    && [[ "$(reports "$PREFIX/bin/dockerd" --version)" == *"version $WANT_DOCKER"* ]] \
    && [[ "$(reports "$PREFIX/bin/containerd" --version)" =~ \ v?$WANT_CONTAINERD ]] \
    && [[ "$(reports "$PREFIX/bin/runc" --version)" == "runc version $WANT_RUNC"* ]]
}

if installed_ok; then
  log "Docker $WANT_DOCKER, containerd $WANT_CONTAINERD, runc $WANT_RUNC present in $PREFIX"
  exit 0
fi

# The machine's own Debian mirror: the URI apt uses for the installed release's main component.
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
find_mirror() { apt-cache policy 2>/dev/null | awk -v s=" $codename/main " 'index($0, s) && /Packages/ {print $2; exit}'; }
mirror=$(find_mirror)
if [ -z "$mirror" ]; then apt-get update -qq; mirror=$(find_mirror); fi
[ -n "$mirror" ] || die "cannot find the Debian mirror for $codename/main in the apt configuration"

state=/var/cache/cloudlet/docker28-apt
rm -rf "$state"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/parts" "$state/debs"
{
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main"
} > "$state/sources.list"
apto=(-o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
      -o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=$state/parts"
      -o "Dir::State::Status=/var/lib/dpkg/status" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
log "reading sid/trixie package lists (private apt state in $state)"
apt-get "${apto[@]}" update -qq

# The exact versions asked for, whatever their Debian revision: newest upload of that upstream.
pick() { # pick PACKAGE UPSTREAM_VERSION -> full Debian version
  apt-cache "${apto[@]}" madison "$1" | awk '{print $3}' \
    | awk -v u="$2" '{v=$0; sub(/^[0-9]+:/, "", v); if (index(v, u) == 1) print $0}' | sort -V | tail -1
}
v_docker=$(pick docker.io "$WANT_DOCKER")
v_containerd=$(pick containerd "$WANT_CONTAINERD")
v_runc=$(pick runc "$WANT_RUNC")
[ -n "$v_docker" ] || die "the mirror offers no docker.io $WANT_DOCKER (has: $(apt-cache "${apto[@]}" madison docker.io | awk '{print $3}' | xargs))"
[ -n "$v_containerd" ] || die "the mirror offers no containerd $WANT_CONTAINERD"
[ -n "$v_runc" ] || die "the mirror offers no runc $WANT_RUNC"
log "downloading docker.io=$v_docker containerd=$v_containerd runc=$v_runc"
(
  cd "$state/debs"
  apt-get "${apto[@]}" download "docker.io=$v_docker" "containerd=$v_containerd" "runc=$v_runc" >/dev/null
  # runc 1.3 links glibc >= 2.38 and libseccomp: both from trixie, run by their own loader.
  # The CLI is its own package in sid (docker-cli); optional, the system's 20.10 CLI also talks
  # to a 28 daemon (API version negotiation).
  apt-get "${apto[@]}" download "docker-cli=$v_docker" >/dev/null 2>&1 || log "note: no docker-cli=$v_docker"
  for l in libc6 libseccomp2; do
    apt-get "${apto[@]}" download "$l/trixie" >/dev/null 2>&1 || apt-get "${apto[@]}" download "$l" >/dev/null
  done
)

rm -rf "$PREFIX.new"
mkdir -p "$PREFIX.new/root" "$PREFIX.new/bin"
for d in "$state"/debs/*.deb; do dpkg-deb -x "$d" "$PREFIX.new/root"; done
R=$PREFIX/root   # the final location (wrappers and links name it)
for b in dockerd docker-proxy docker containerd containerd-shim-runc-v2 ctr; do
  src=
  for dir in usr/sbin usr/bin sbin bin usr/libexec/docker; do
    if [ -x "$PREFIX.new/root/$dir/$b" ]; then src=$dir/$b; break; fi
  done
  if [ -z "$src" ]; then
    [ "$b" = docker ] && { log "note: no docker CLI in docker.io $v_docker"; continue; }
    die "$b not found in the extracted packages"
  fi
  ln -s "$R/$src" "$PREFIX.new/bin/$b"
done
# docker-init (tini) if the package has one: dockerd looks for it in PATH for --init.
for cand in usr/sbin/docker-init usr/bin/docker-init usr/libexec/docker/docker-init; do
  [ -x "$PREFIX.new/root/$cand" ] && { ln -s "$R/$cand" "$PREFIX.new/bin/docker-init"; break; }
done
runc_bin=
for cand in usr/sbin/runc usr/bin/runc; do [ -x "$PREFIX.new/root/$cand" ] && runc_bin=$cand && break; done
[ -n "$runc_bin" ] || die "runc not found in the extracted runc package"
# exec keeps runc's file descriptors (the console socket, CRIU's swrk socket pair) intact.
# runc re-executes /proc/self/exe for `runc init`; /proc/self/exe is then the loader, which
# is given the same arguments again because runc re-execs with argv[0] only: so runc must see
# itself as the ELF, not the loader. runc >= 1.2 copies or reopens /proc/self/exe (a memfd
# clone of the binary); the check below proves whether `runc init` works this way.
cat > "$PREFIX.new/bin/runc" <<EOF
#!/bin/sh
# Installed by Cloudlet's scripts/setup-docker28.sh: runc $v_runc through a private loader.
P=$R
exec "\$P/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "\$P/usr/lib/x86_64-linux-gnu:\$P/lib/x86_64-linux-gnu" "\$P/$runc_bin" "\$@"
EOF
chmod 755 "$PREFIX.new/bin/runc"
printf 'docker.io=%s\ncontainerd=%s\nrunc=%s\n' "$v_docker" "$v_containerd" "$v_runc" > "$PREFIX.new/VERSIONS"

rm -rf "$PREFIX.old"
[ -e "$PREFIX" ] && mv "$PREFIX" "$PREFIX.old"
mv "$PREFIX.new" "$PREFIX"
rm -rf "$PREFIX.old"
installed_ok || die "installed binaries do not report the expected versions: $("$PREFIX/bin/dockerd" --version 2>&1); $("$PREFIX/bin/containerd" --version 2>&1); $("$PREFIX/bin/runc" --version 2>&1 | head -1)"
log "installed into $PREFIX: $(tr '\n' ' ' < "$PREFIX/VERSIONS")"
