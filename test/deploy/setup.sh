#!/usr/bin/env bash
# Installs what test:deploy needs and is missing: Debian's prometheus package (prometheus and
# promtool). Quiet: everything goes to stderr, so stdout carries nothing but jest's own output
# (CI reads a totals line from stdout).
set -euo pipefail
exec 1>&2
cd "$(dirname "$0")/../.."

# The Docker and systemd tests run the built CLI (dist/cli.js), as the image and the unit do.
if [ ! -f dist/cli.js ]; then
  npm run build >&2
fi

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# systemd-analyze (for `verify` of the unit) is in the systemd package; cheap when absent.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test:deploy setup: missing ${need[*]} and cannot apt-get install here; the tests needing them will fail" >&2
  exit 0
fi

log=$(mktemp)
# The package's maintainer scripts would start a prometheus daemon on :9090; forbid service
# starts during the install (the standard policy-rc.d switch), unless a policy already exists.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
fi
trap '[ $own_policy -eq 1 ] && rm -f "$policy"; rm -f "$log"' EXIT

export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq -o DPkg::Lock::Timeout=600 && apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u); } >"$log" 2>&1; then
  echo "test:deploy setup: apt-get failed:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
echo "test:deploy setup: installed $(printf '%s ' "${need[@]}" | tr ' ' '\n' | sort -u | tr '\n' ' ')" >&2
