/**
 * The admin endpoint (`--admin ADDR:PORT`, off by default): plain HTTP with
 * `Deno.serve`, for a Prometheus scraper, a load balancer's health check and
 * `deno task status`.
 *
 * - `GET /metrics`: the counter registry in the Prometheus text format
 *   (`shared/metrics_text.ts`);
 * - `GET /healthz`: 200 `ok` while the process runs;
 * - `GET /readyz`: 200 `ready`, or 503 with why not (the TUN is not up, no
 *   session yet, draining);
 * - `GET /status`: the status file's JSON (with the process's memory).
 *
 * There is no authentication: keep it on loopback or a private network.
 *
 * @module
 */

import type { CounterRegistry } from "../shared/counters.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from "../shared/metrics_text.ts";
import type { HostPort } from "../shared/options.ts";

/** What the endpoint serves, from the relay or the client. */
export interface AdminSource {
  readonly counters: CounterRegistry;
  /** The JSON of `/status` (the status file's). */
  status(): unknown;
  /** Why the process is not ready (empty: ready), for `/readyz`. */
  notReady(): readonly string[];
}

/** A running admin endpoint. */
export interface AdminServer {
  /** The address it listens on (the port when 0 was asked for). */
  readonly addr: HostPort;
  /** Stops listening. */
  close(): Promise<void>;
}

/** Answers one admin request (exported for tests without a socket). */
export function handleAdminRequest(request: Request, source: AdminSource): Response {
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
  }
  const path = new URL(request.url).pathname;
  switch (path) {
    case "/metrics":
      return new Response(renderPrometheus(source.counters), {
        headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
      });
    case "/healthz":
      return text(200, "ok\n");
    case "/readyz": {
      const reasons = source.notReady();
      return reasons.length === 0
        ? text(200, "ready\n")
        : text(503, `not ready: ${reasons.join("; ")}\n`);
    }
    case "/status":
      return new Response(statusJson(source.status()), {
        headers: { "content-type": "application/json" },
      });
    default:
      return text(404, "not found: try /metrics, /healthz, /readyz or /status\n");
  }
}

/** The status as the status file holds it: with the process's memory (`Deno.memoryUsage()`, bytes). */
function statusJson(status: unknown): string {
  const withMemory = typeof status === "object" && status !== null && !Array.isArray(status)
    ? { ...status, memory: Deno.memoryUsage() }
    : status;
  return JSON.stringify(withMemory, null, 2) + "\n";
}

function text(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

/**
 * Listens on `address` and serves {@linkcode handleAdminRequest}. Throws
 * `Cannot listen on 127.0.0.1:9464 for --admin: Address already in use ...`
 * when the port is taken.
 */
export function serveAdmin(address: HostPort, source: AdminSource, log: Logger): AdminServer {
  const shown = address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: address.hostname,
      port: address.port,
      onListen: () => {},
      onError: (error) => {
        log.warn("admin request failed", { error: errorMessage(error) });
        return text(500, "internal error\n");
      },
    }, (request) => handleAdminRequest(request, source));
  } catch (error) {
    throw new Error(`Cannot listen on ${shown} for --admin: ${errorMessage(error)}`);
  }
  log.info("admin endpoint listening", { addr: shown });
  return {
    addr: { hostname: server.addr.hostname, port: server.addr.port },
    close: () => server.shutdown(),
  };
}
