#!/usr/bin/env bash
# The benchmark from a clean clone on a fresh Debian 12 machine, as root:
# installs what it measures with (iperf3, Debian's wireguard-go, wireguard-tools,
# Deno), then runs `deno task bench` with the given options (e.g. --quick).
#
# To compare Debian's wireguard-go (0.0.20220316, no offloads) with the current
# release (../shared/bin/wireguard-go-0.0.20250522 beside the checkout, or any
# build of it), name each build; each gets its own column, and paths are taken
# from the checkout's root:
#   bash tests/bench/run.sh --wireguard-go /usr/bin/wireguard-go \
#     --wireguard-go ../shared/bin/wireguard-go-0.0.20250522
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
