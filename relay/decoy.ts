/**
 * `--decoy DIR`: the relay answers GET and HEAD requests with the static
 * files in DIR (`/` is `index.html`), and every 404 (an unknown path, a
 * request without valid credentials) with DIR/404.html, so the host looks
 * like a small website to whoever probes it.
 *
 * Files are read when asked for: only regular files inside DIR (after
 * resolving links), at most {@linkcode MAX_DECOY_FILE_BYTES}; `..`, NUL and
 * hidden names are refused without touching the file system. The 404 page
 * is read once at start, so every 404 is the same bytes.
 *
 * @module
 */

import type { H3RequestStream } from "../shared/h3/request_stream.ts";
import { errorMessage } from "../shared/errors.ts";

/** The largest file served, bytes. */
export const MAX_DECOY_FILE_BYTES = 1024 * 1024;

const TYPES: Readonly<Record<string, string>> = {
  html: "text/html; charset=utf-8",
  htm: "text/html; charset=utf-8",
  css: "text/css",
  js: "text/javascript",
  json: "application/json",
  txt: "text/plain; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  ico: "image/x-icon",
  webp: "image/webp",
  woff2: "font/woff2",
};

/** What {@linkcode loadDecoy} gives the relay (`RelayOptions.notFound` and `serveOther`). */
export interface Decoy {
  notFound(request: H3RequestStream): Promise<void>;
  serveOther(request: H3RequestStream): Promise<number>;
}

/**
 * The file a request path names inside the site, relative (`index.html`,
 * `css/site.css`), or `undefined` when it names none: not absolute, bad
 * percent-encoding, a `.` or `..` segment, a hidden segment, NUL or a
 * backslash. The query is ignored; a path ending in `/` names its
 * `index.html`.
 */
export function decoyFileName(path: string): string | undefined {
  let end = 0;
  while (end < path.length && path[end] !== "?" && path[end] !== "#") end++;
  const bare = path.slice(0, end);
  if (!bare.startsWith("/") || bare.length > 1024) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(bare);
  } catch {
    return undefined;
  }
  if (decoded.includes("\0") || decoded.includes("\\")) return undefined;
  const segments = decoded.slice(1).split("/");
  if (segments[segments.length - 1] === "") segments[segments.length - 1] = "index.html";
  for (const segment of segments) {
    if (segment === "" || segment.startsWith(".")) return undefined;
  }
  return segments.join("/");
}

/**
 * Reads DIR's 404 page and returns the responders. Throws with a clear
 * message when DIR is not a readable directory.
 */
export async function loadDecoy(dir: string): Promise<Decoy> {
  let root: string;
  try {
    root = await Deno.realPath(dir);
    if (!(await Deno.stat(root)).isDirectory) throw new Error("not a directory");
  } catch (error) {
    throw new Error(`Cannot use --decoy ${dir}: ${errorMessage(error)}`);
  }
  let page: Uint8Array | undefined;
  try {
    page = await Deno.readFile(`${root}/404.html`);
  } catch {
    page = undefined;
  }
  const notFoundBody = page ?? new TextEncoder().encode("not found\n");
  const notFoundType = page ? TYPES.html : "text/plain";

  const answer = async (
    request: H3RequestStream,
    status: number,
    type: string,
    body: Uint8Array,
    head: boolean,
  ) => {
    await request.writeHeaders([
      [":status", String(status)],
      ["content-type", type],
      ["content-length", String(body.length)],
    ]);
    if (!head && body.length > 0) await request.writeData(body);
    await request.end();
  };
  const notFound = async (request: H3RequestStream) => {
    await answer(request, 404, notFoundType, notFoundBody, request.header(":method") === "HEAD");
    request.abort();
  };

  // Resolved paths that start with this are inside the site (also for DIR "/").
  const inside = root.endsWith("/") ? root : `${root}/`;
  const read = async (name: string): Promise<Uint8Array | undefined> => {
    try {
      const path = await Deno.realPath(`${root}/${name}`);
      if (!path.startsWith(inside)) return undefined;
      const info = await Deno.stat(path);
      if (!info.isFile || info.size > MAX_DECOY_FILE_BYTES) return undefined;
      return await Deno.readFile(path);
    } catch {
      return undefined;
    }
  };

  return {
    notFound,
    async serveOther(request) {
      const method = request.header(":method");
      const name = decoyFileName(request.header(":path") ?? "");
      const body = (method === "GET" || method === "HEAD") && name !== undefined
        ? await read(name)
        : undefined;
      if (body === undefined || name === undefined) {
        await notFound(request);
        return 404;
      }
      const extension = name.slice(name.lastIndexOf(".") + 1).toLowerCase();
      await answer(
        request,
        200,
        TYPES[extension] ?? "application/octet-stream",
        body,
        method === "HEAD",
      );
      return 200;
    },
  };
}
