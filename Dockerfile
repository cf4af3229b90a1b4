# Images of masque-vpn: `relay`, `client`, and `app` (the code alone: the
# certificate init service and the compose project's target server use it).
#
#   docker build --target relay  -t masque-vpn-relay:dev .
#   docker build --target client -t masque-vpn-client:dev .
#   docker build --target app    -t masque-vpn-app:dev .
#
# Build arguments: DENO_VERSION (default 2.9.6), DEBIAN_IMAGE (default
# debian:bookworm-slim). Deno comes from its npm package (@deno/linux-*-glibc,
# the binary the `deno` npm package installs): the build takes
# deploy/docker/deno-cache/<package>-<version>.tgz when it is there (put it
# there with `npm pack`; see docs/deploy.md) and otherwise fetches it with npm
# in a throwaway stage. The code's dependencies are cached at build time (from
# deploy/docker/deno-cache/deno-dir when it holds them, else from npm), so a
# container starts without network access (`--cached-only`).
#
# Without Docker's default bridge (the test engines here), build with the
# classic builder and host networking:
#   DOCKER_BUILDKIT=0 docker build --network host --target relay ...
# No `# syntax=` line: BuildKit would pull its frontend image.

ARG DEBIAN_IMAGE=debian:bookworm-slim

# --- the Deno binary --------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS deno
ARG DENO_VERSION=2.9.6
COPY deploy/docker/deno-cache/ /tmp/deno-cache/
RUN set -eu; \
    case "$(dpkg --print-architecture)" in \
      amd64) pkg=linux-x64-glibc ;; \
      arm64) pkg=linux-arm64-glibc ;; \
      *) echo "no Deno build for $(dpkg --print-architecture)" >&2; exit 1 ;; \
    esac; \
    tgz="/tmp/deno-cache/$pkg-$DENO_VERSION.tgz"; \
    if [ ! -s "$tgz" ]; then \
      echo "deploy/docker/deno-cache/$pkg-$DENO_VERSION.tgz missing: fetching @deno/$pkg@$DENO_VERSION with npm"; \
      apt-get update -q; \
      apt-get install -y -q --no-install-recommends ca-certificates npm; \
      (cd /tmp/deno-cache && npm pack --silent "@deno/$pkg@$DENO_VERSION" && \
        mv "deno-$pkg-$DENO_VERSION.tgz" "$tgz"); \
    fi; \
    tar -xzf "$tgz" -C /tmp package/deno; \
    install -m 0755 /tmp/package/deno /usr/local/bin/deno; \
    /usr/local/bin/deno --version | grep -q "^deno $DENO_VERSION "

# --- what every image shares ------------------------------------------------
FROM ${DEBIAN_IMAGE} AS base
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DENO_DIR=/opt/deno-dir \
    DENO_NO_UPDATE_CHECK=1 \
    DENO_NO_PROMPT=1 \
    NO_COLOR=1
COPY --from=deno /usr/local/bin/deno /usr/local/bin/deno
# A user for what needs no privileges (the target server); the relay and the
# client run as root with every capability dropped but NET_ADMIN (compose.yaml).
RUN useradd --system --uid 10001 --user-group --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin masque
WORKDIR /opt/masque-vpn

# --- npm packages cached beforehand (optional) ------------------------------
# deploy/docker/deno-cache/deno-dir/npm, when there, is a DENO_DIR's npm cache
# filled on the build host (`DENO_DIR=deploy/docker/deno-cache/deno-dir deno
# cache relay/main.ts client/main.ts`; docs/deploy.md): `deno cache` below
# then downloads nothing. A throwaway stage, so the app image gets no copy of
# the whole context directory.
FROM base AS npm-cache
COPY deploy/docker/deno-cache/ /tmp/deno-cache/
RUN mkdir -p "$DENO_DIR" \
    && if [ -d /tmp/deno-cache/deno-dir/npm ]; then cp -a /tmp/deno-cache/deno-dir/npm "$DENO_DIR/"; fi

# --- the code, its dependencies cached --------------------------------------
FROM base AS app
COPY --from=npm-cache /opt/deno-dir /opt/deno-dir
COPY deno.json deno.lock ./
COPY shared/ shared/
COPY ffi/ ffi/
COPY host/ host/
COPY relay/ relay/
COPY client/ client/
COPY deploy/docker/*.ts deploy/docker/
COPY tests/e2e/tools/http_server.ts tests/e2e/tools/udp_echo.ts tests/e2e/tools/
# The WebTransport package is imported when it is first used: check that it
# is cached (deno cache does not fail when it cannot fetch it).
RUN deno cache relay/main.ts client/main.ts deploy/docker/*.ts tests/e2e/tools/*.ts \
    && { test -d "$DENO_DIR/npm/registry.npmjs.org/@fails-components/webtransport/1.6.8" \
         || { echo "npm:@fails-components/webtransport@1.6.8 was not cached" >&2; exit 1; }; } \
    && mkdir -p "$DENO_DIR" && chmod -R a+rX "$DENO_DIR" /opt/masque-vpn
CMD ["deno", "--version"]

# --- relay ------------------------------------------------------------------
# nftables for --nat, procps for sysctl, iproute2 to look at the TUN.
FROM base AS relay
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends nftables procps iproute2 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=app /opt/deno-dir /opt/deno-dir
COPY --from=app /opt/masque-vpn /opt/masque-vpn
RUN mkdir -p /run/masque-vpn /etc/masque-vpn
# The permissions of `deno task relay:nat` (deno.json), but for --allow-write:
# /run/masque-vpn (the status file) instead of ./dev-certs. The admin endpoint
# on the container's loopback serves the HEALTHCHECK and `deno task status`
# (docs/operations.md); an --admin given later (0.0.0.0:9464 for a scraper)
# replaces it: keep port 9464, or the HEALTHCHECK fails.
ENTRYPOINT ["deno", "run", "--cached-only", "--v8-flags=--max-semi-space-size=4", "--unstable-net", "--allow-net", "--allow-ffi", \
    "--allow-read", "--allow-write=/run/masque-vpn", "--allow-run=nft,sysctl", \
    "--allow-env=MASQUE_LOG_LEVEL", "relay/main.ts", "--status-file", "/run/masque-vpn/status.json", \
    "--admin", "127.0.0.1:9464"]
# Certificate and key mounted at /etc/masque-vpn/tls/, the users file (made
# with `deno task users`) in a directory at /etc/masque-vpn/users/, so that
# SIGHUP sees a file replaced by a rename (compose.yaml, docs/deploy.md).
CMD ["--port", "443", "--nat", "--cert", "/etc/masque-vpn/tls/server.pem", \
    "--key", "/etc/masque-vpn/tls/server-key.pem", "--users", "/etc/masque-vpn/users/users.json"]
# Healthy while the admin endpoint answers /healthz: it listens once the TUN
# is up and the QUIC listener bound, and keeps answering while the relay
# drains (/readyz is the one that turns false then).
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["deno", "run", "--cached-only", "--allow-net=127.0.0.1:9464", \
        "deploy/docker/healthcheck.ts", "--url", "http://127.0.0.1:9464/healthz"]
# UDP for HTTP/3; TCP (same number) for HTTP/2 and WebTransport (--no-tcp turns it off).
EXPOSE 443/udp 443/tcp

# --- client -----------------------------------------------------------------
# nftables for the kill switch, iproute2 and iputils-ping to look at and try
# the tunnel. ping loses its file capability (cap_net_raw): in a container
# without CAP_NET_RAW such a binary cannot even be executed (EPERM), while
# without it ping uses ICMP datagram sockets, which Docker allows
# (net.ipv4.ping_group_range).
FROM base AS client
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends nftables iproute2 iputils-ping \
    && rm -rf /var/lib/apt/lists/* \
    && cp /usr/bin/ping /usr/bin/ping.plain && mv /usr/bin/ping.plain /usr/bin/ping
COPY --from=app /opt/deno-dir /opt/deno-dir
COPY --from=app /opt/masque-vpn /opt/masque-vpn
RUN mkdir -p /run/masque-vpn /etc/masque-vpn
# The permissions of `deno task client` (deno.json), plus --allow-write for
# the status file; the admin endpoint on the container's loopback as in the
# relay image.
ENTRYPOINT ["deno", "run", "--cached-only", "--v8-flags=--max-semi-space-size=4", "--unstable-net", "--allow-net", "--allow-ffi", \
    "--allow-read", "--allow-write=/run/masque-vpn,/etc/resolv.conf,/var/lib/masque-vpn", \
    "--allow-run=nft,resolvectl", "--allow-env=TARGET_CIDRS,MASQUE_LOG_LEVEL,MASQUE_TOKEN", \
    "client/main.ts", "--status-file", "/run/masque-vpn/status.json", "--admin", "127.0.0.1:9464"]
# Its token: --token-file (mounted, mode 0600) or the environment variable
# MASQUE_TOKEN; never on the command line (compose.yaml, docs/deploy.md).
CMD ["--help"]
# Healthy while the tunnel is up: /readyz answers 200 while a session is up
# and 503 while the client connects or reconnects (a reconnect longer than
# the retries makes the container unhealthy until it is back).
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["deno", "run", "--cached-only", "--allow-net=127.0.0.1:9464", \
        "deploy/docker/healthcheck.ts", "--url", "http://127.0.0.1:9464/readyz"]
