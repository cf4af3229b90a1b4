#!/usr/bin/env bash
# The benchmark from a clean clone on a fresh Debian 12 machine, as root:
# installs what it measures with (iperf3, wireguard-go, Deno), then runs
# `deno task bench` with the given options (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/../.."

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  ca-certificates iproute2 nftables iputils-ping iperf3 procps wireguard-go wireguard-tools
command -v npm >/dev/null || apt-get install -y -q --no-install-recommends npm
if ! command -v deno >/dev/null || ! deno --version | grep -q '^deno 2\.9\.6'; then
  npm install -g deno@2.9.6
fi
exec deno task bench "$@"
