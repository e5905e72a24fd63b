#!/usr/bin/env bash
# Installs the Debian packages Herald's lab and tests need, only those missing.
# Safe to run any number of times.
set -euo pipefail

pkgs=(frr bird2 iputils-ping iptables nftables iproute2 curl conntrack procps arping ndisc6 tcpdump make)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "missing packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
	{ apt-get update -qq && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
# The lab runs its own BIRD in a namespace; a system one (where systemd
# started it on install) is not wanted.
if command -v systemctl >/dev/null && systemctl is-active -q bird 2>/dev/null; then
	systemctl disable --now bird >/dev/null 2>&1 || true
fi
