#!/usr/bin/env bash
# Idempotent set-up of a machine for Cloudlet (Debian 12, root).
#  1. Debian packages: Docker engine, runc, iptables, iproute2, busybox-static, criu (for crit).
#  2. CRIU >= 4.2 in a private prefix when the system's criu cannot dump on this kernel
#     (see docs/SETUP.md: Debian 12's 3.17 fails on kernels >= 6.13).
#  3. Docker 28.5 + containerd 2.1 in a private prefix, the lab's second engine kind
#     (scripts/setup-docker28.sh; the system's Docker 20.10 is not touched).
#  4. npm dependencies and the TypeScript build.
# Every step checks first and does nothing when already done. No registry host is written
# here: the Debian mirror is read from the machine's own apt configuration.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and CRIU)"

CRIU_PREFIX=${CLOUDLET_CRIU_PREFIX:-/opt/cloudlet/criu}
CRIU_WRAPPER=/usr/local/sbin/criu

# ---------------------------------------------------------------- Debian packages
debs=(docker.io containerd runc iptables iproute2 busybox-static criu util-linux procps
      ca-certificates python3-protobuf gcc libc6-dev iputils-ping rsync attr
      libnetfilter-queue-dev   # native/cl-hold: a handoff holds the service address's packets
      chromium chromium-driver    # the dashboard's end-to-end test (headless)
      nginx-light postgresql-15 python3)   # bench apps: programs built into images from the host
missing=()
for p in "${debs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  # Package scripts must not start a system-wide dockerd: the lab starts its own engines.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
else
  log "Debian packages present"
fi

# ---------------------------------------------------------------- CRIU
# A criu is good enough when it is >= 4.2 and `criu check` passes (4.1 and older fail on this
# kernel: vDSO layout since 6.13, SO_PASSCRED on TCP sockets since 6.16).
criu_ok() {
  local v
  v=$("$1" --version 2>/dev/null | awk '/^Version:/ {print $2}') || return 1
  [ -n "$v" ] || return 1
  dpkg --compare-versions "$v" ge 4.2 || return 1
  "$1" check >/dev/null 2>&1
}

if [ -x "$CRIU_WRAPPER" ] && criu_ok "$CRIU_WRAPPER"; then
  log "CRIU $("$CRIU_WRAPPER" --version | awk '/^Version:/ {print $2}') present at $CRIU_WRAPPER"
elif criu_ok /usr/sbin/criu; then
  log "system CRIU is recent enough"
else
  log "installing CRIU >= 4.2 into $CRIU_PREFIX (system criu is too old for this kernel)"
  # The machine's own Debian mirror: the URI apt uses for the installed release's main component.
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  mirror=$(apt-cache policy 2>/dev/null | awk -v s=" $codename/main " 'index($0, s) && /Packages/ {print $2; exit}')
  if [ -z "$mirror" ]; then
    apt-get update -qq
    mirror=$(apt-cache policy 2>/dev/null | awk -v s=" $codename/main " 'index($0, s) && /Packages/ {print $2; exit}')
  fi
  [ -n "$mirror" ] || die "cannot find the Debian mirror for $codename/main in the apt configuration"

  state=/var/cache/cloudlet/criu-apt
  rm -rf "$state"
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/parts" "$state/debs"
  {
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main"
  } > "$state/sources.list"
  apto=(-o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
        -o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=$state/parts"
        -o "Dir::State::Status=/var/lib/dpkg/status" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  apt-get "${apto[@]}" update -qq

  # Newest criu >= 4.2 in sid; its libcompel1 of the same version.
  criu_ver=$(apt-cache "${apto[@]}" madison criu | awk '{print $3}' | sort -V | tail -1)
  dpkg --compare-versions "$criu_ver" ge 4.2 || die "the mirror offers criu $criu_ver, need >= 4.2"
  # Libraries come from trixie where it has them (glibc 2.41 etc.), else from sid.
  libs=(libc6 libgnutls30t64 libnftables1 libprotobuf-c1 libbsd0 libuuid1 libgmp10 libhogweed6t64
        libidn2-0 libjansson4 libmnl0 libnettle8t64 libnftnl11 libp11-kit0 libtasn1-6
        libunistring5 libxtables12 libffi8 libmd0 libcap2 libgcc-s1)
  # criu 4.2 is built against sid's libnet and libnl (trixie's libnl lacks symbol versions).
  sid_libs=(libnet9 libnl-3-200)
  (
    cd "$state/debs"
    apt-get "${apto[@]}" download "criu=$criu_ver" "libcompel1=$criu_ver" >/dev/null
    for l in "${sid_libs[@]}"; do apt-get "${apto[@]}" download "$l/sid" >/dev/null; done
    for l in "${libs[@]}"; do
      apt-get "${apto[@]}" download "$l/trixie" >/dev/null 2>&1 \
        || apt-get "${apto[@]}" download "$l" >/dev/null
    done
  )
  rm -rf "$CRIU_PREFIX.new"
  mkdir -p "$CRIU_PREFIX.new"
  for d in "$state"/debs/*.deb; do dpkg-deb -x "$d" "$CRIU_PREFIX.new"; done
  rm -rf "$CRIU_PREFIX"
  mv "$CRIU_PREFIX.new" "$CRIU_PREFIX"

  # The wrapper runs criu through the prefix's own loader and libraries; exec keeps file
  # descriptors (criu swrk FD from runc) intact.
  mkdir -p "$(dirname "$CRIU_WRAPPER")"
  cat > "$CRIU_WRAPPER" <<EOF
#!/bin/sh
# Installed by Cloudlet's scripts/setup.sh: CRIU $criu_ver from a private prefix.
P=$CRIU_PREFIX
exec "\$P/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "\$P/usr/lib/x86_64-linux-gnu:\$P/lib/x86_64-linux-gnu" "\$P/usr/sbin/criu" "\$@"
EOF
  chmod 755 "$CRIU_WRAPPER"
  criu_ok "$CRIU_WRAPPER" || die "installed CRIU fails 'criu check': $("$CRIU_WRAPPER" check 2>&1 | tail -3)"
  log "CRIU $criu_ver installed ($CRIU_WRAPPER)"
fi

# ---------------------------------------------------------------- Docker 28
bash "$here/scripts/setup-docker28.sh"

# ---------------------------------------------------------------- npm + build
cd "$here"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi
log "building"
npx tsc -p tsconfig.json
npx tsc -p tsconfig.web.json   # the dashboard's browser code (web/src -> dist/web)
# The lab's link emulator (this kernel has no netem; see native/cl-wire.c).
mkdir -p dist/native
if [ ! -x dist/native/cl-wire ] || [ native/cl-wire.c -nt dist/native/cl-wire ]; then
  cc -O2 -Wall -Wextra -o dist/native/cl-wire native/cl-wire.c
fi
# What holds a service address's packets during a handoff (native/cl-hold.c).
if [ ! -x dist/native/cl-hold ] || [ native/cl-hold.c -nt dist/native/cl-hold ]; then
  cc -O2 -Wall -Wextra -o dist/native/cl-hold native/cl-hold.c -lnetfilter_queue
fi
log "done"
