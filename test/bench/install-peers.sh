#!/bin/sh
# Installs the benchmark's peers and load tools from Debian's packages, and the npm proxies into
# test/bench/.peers (through bench.js --npm-peers).
# Run as root (or through sudo). The services these packages enable at install time are stopped
# and disabled: the benchmark starts its own instances with generated configs on loopback.
set -eu

SUDO=''
if [ "$(id -u)" -ne 0 ]; then SUDO='sudo'; fi

PACKAGES='haproxy nginx libnginx-mod-stream socat rinetd iperf3 wrk'
# The protocol rows (--only socks,ftp): SOCKS5 peers, and the FTP server and client.
PACKAGES="$PACKAGES microsocks dante-server vsftpd curl"

$SUDO apt-get -o DPkg::Lock::Timeout=600 update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $PACKAGES

# Debian starts haproxy, nginx, rinetd, danted, vsftpd (and sometimes iperf3, microsocks) as
# system services; they would hold ports and CPU during a run. Stop them where a service manager
# exists; ignore failures.
for svc in haproxy nginx rinetd iperf3 danted vsftpd microsocks; do
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  elif command -v service >/dev/null 2>&1; then
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  fi
done

# The npm proxies (rows tcp-proxy-js, node-tcp-proxy) are not Debian packages and not project
# dependencies: bench.js installs its pinned versions into test/bench/.peers on first use. Do it
# now, while the registry is reachable, as the user who runs the bench (not as root via sudo).
BENCH_JS="$(dirname "$0")/bench.js"
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    sudo -u "$SUDO_USER" node "$BENCH_JS" --npm-peers || echo "missing: npm proxies (bench.js skips their rows)" >&2
  else
    node "$BENCH_JS" --npm-peers || echo "missing: npm proxies (bench.js skips their rows)" >&2
  fi
else
  echo "missing: node or npm, for the npm proxies (bench.js skips their rows)" >&2
fi

for tool in haproxy nginx socat rinetd iperf3 wrk taskset microsocks danted vsftpd curl; do
  if command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ]; then
    echo "ok: $tool"
  else
    echo "missing: $tool" >&2
  fi
done
