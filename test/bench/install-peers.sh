#!/bin/sh
# Installs the benchmark's peers and load tools from Debian's packages.
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

for tool in haproxy nginx socat rinetd iperf3 wrk taskset microsocks danted vsftpd curl; do
  if command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ]; then
    echo "ok: $tool"
  else
    echo "missing: $tool" >&2
  fi
done
