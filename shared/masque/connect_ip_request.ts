/**
 * The CONNECT-IP request and response (RFC 9484 §4): an extended CONNECT
 * (RFC 9220) with `:protocol = connect-ip`, a path from the proxy's URI
 * template with the `target` and `ipproto` variables (RFC 9484 §4.6), and
 * `capsule-protocol: ?1` (RFC 9297 §3.4).
 *
 * ```
 * :method = CONNECT
 * :protocol = connect-ip
 * :scheme = https
 * :authority = proxy.example
 * :path = /.well-known/masque/ip/198.18.2.0%2F24/17/
 * capsule-protocol = ?1
 * ```
 *
 * Headers are `[name, value]` tuples as QPACK delivers them: lowercase names,
 * pseudo-headers first.
 *
 * @module
 */

import { formatIp, formatPrefix, type IpPrefix, parsePrefix } from "../packet/ip_address.ts";

/** The default URI template of RFC 9484 §3 (path form). */
export const DEFAULT_URI_TEMPLATE = "/.well-known/masque/ip/{target}/{ipproto}/";

/** The `:protocol` value of a CONNECT-IP request (RFC 9484 §4). */
export const CONNECT_IP_PROTOCOL = "connect-ip";

/** The header that turns on the Capsule Protocol (RFC 9297 §3.4). */
export const CAPSULE_PROTOCOL_HEADER = "capsule-protocol";

/**
 * What a CONNECT-IP request asks to reach (RFC 9484 §4.6): any host (`*`), or
 * an IP prefix; a bare address is a /32 or /128. Hostnames are not supported.
 */
export type ConnectIpTarget =
  | { readonly kind: "any" }
  | { readonly kind: "prefix"; readonly prefix: IpPrefix };

/**
 * The scope of a CONNECT-IP request (RFC 9484 §4.6): the target and the IP
 * protocol number (0..255), or `"any"` for `*`.
 */
export interface ConnectIpScope {
  readonly target: ConnectIpTarget;
  readonly ipProtocol: number | "any";
}

/** A header field as a `[name, value]` tuple. */
export type HeaderField = readonly [name: string, value: string];

// ---------------------------------------------------------------------------
// URI templates: RFC 6570 level 1, variables `target` and `ipproto` only

type TemplatePart = { readonly literal: string } | { readonly variable: "target" | "ipproto" };

interface ParsedTemplate {
  /** Authority of an absolute `https://` template. */
  readonly authority: string | undefined;
  readonly parts: readonly TemplatePart[];
  readonly matcher: RegExp;
}

function parseTemplate(template: string): ParsedTemplate {
  const invalid = (why: string) => new Error(`Invalid URI template "${template}": ${why}`);
  let authority: string | undefined;
  let path = template;
  const absolute = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)(.*)$/.exec(template);
  if (absolute !== null) {
    if (absolute[1].toLowerCase() !== "https") throw invalid("the scheme must be https");
    if (absolute[2] === "") throw invalid("the authority is empty");
    authority = absolute[2];
    path = absolute[3];
  }
  if (!path.startsWith("/")) throw invalid("the path must start with '/'");
  const parts: TemplatePart[] = [];
  const seen = new Set<string>();
  let pattern = "^";
  let i = 0;
  while (i < path.length) {
    const open = path.indexOf("{", i);
    const close = path.indexOf("}", i);
    if (close >= 0 && (open < 0 || close < open)) throw invalid("'}' without '{'");
    if (open < 0) {
      parts.push({ literal: path.slice(i) });
      pattern += escapeRegExp(path.slice(i));
      break;
    }
    if (open > i) {
      parts.push({ literal: path.slice(i, open) });
      pattern += escapeRegExp(path.slice(i, open));
    } else if (parts.length > 0 && "variable" in parts[parts.length - 1]) {
      throw invalid("two variables without a literal between them cannot be matched");
    }
    const end = path.indexOf("}", open);
    if (end < 0) throw invalid("'{' without '}'");
    const name = path.slice(open + 1, end);
    if (name !== "target" && name !== "ipproto") {
      throw invalid(`unsupported expression {${name}} (only {target} and {ipproto})`);
    }
    if (seen.has(name)) throw invalid(`{${name}} appears twice`);
    seen.add(name);
    parts.push({ variable: name });
    pattern += "([^/]+)";
    i = end + 1;
  }
  return { authority, parts, matcher: new RegExp(pattern + "$") };
}

function escapeRegExp(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&");
}

/** Percent-encodes everything but RFC 3986 unreserved characters (RFC 6570 §3.2.2). */
function encodeUnreserved(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function formatTarget(target: ConnectIpTarget): string {
  if (target.kind === "any") return "*";
  const { prefix } = target;
  return prefix.prefixLength === prefix.address.length * 8
    ? formatIp(prefix.address)
    : formatPrefix(prefix);
}

function formatIpProtocol(ipProtocol: number | "any"): string {
  if (ipProtocol === "any") return "*";
  if (!Number.isInteger(ipProtocol) || ipProtocol < 0 || ipProtocol > 255) {
    throw new RangeError(`Cannot expand URI template: IP protocol ${ipProtocol} is not 0..255`);
  }
  return String(ipProtocol);
}

/**
 * Expands a CONNECT-IP URI template (RFC 9484 §4.6, RFC 6570 level 1) into
 * the request's `:path`. The target is written as an address for a /32 or
 * /128 and as `address/length` otherwise, percent-encoded (`:` as `%3A`,
 * `/` as `%2F`); the wildcard is a literal `*`, as in RFC 9484's examples.
 * An absolute `https://` template yields only its path. Throws an `Error`
 * for a template other than `{target}`/`{ipproto}` level-1 expressions, and
 * a `RangeError` for an IP protocol outside 0..255.
 */
export function expandConnectIpPath(template: string, scope: ConnectIpScope): string {
  const parsed = parseTemplate(template);
  let path = "";
  for (const part of parsed.parts) {
    if ("literal" in part) path += part.literal;
    else if (part.variable === "target") path += encodeTarget(scope.target);
    else path += formatIpProtocol(scope.ipProtocol);
  }
  return path;
}

function encodeTarget(target: ConnectIpTarget): string {
  return target.kind === "any" ? "*" : encodeUnreserved(formatTarget(target));
}

// ---------------------------------------------------------------------------
// Requests and responses

/**
 * The request headers of a CONNECT-IP request (RFC 9484 §4, RFC 9220 §3):
 * `:method CONNECT`, `:protocol connect-ip`, `:scheme https`, `:authority`,
 * `:path`, then `capsule-protocol: ?1`.
 */
export function buildConnectIpRequest(
  options: { authority: string; path: string },
): [string, string][] {
  return [
    [":method", "CONNECT"],
    [":protocol", CONNECT_IP_PROTOCOL],
    [":scheme", "https"],
    [":authority", options.authority],
    [":path", options.path],
    [CAPSULE_PROTOCOL_HEADER, "?1"],
  ];
}

/**
 * The response headers for `status`: `:status`, plus `capsule-protocol: ?1`
 * on a 2xx that accepts the tunnel (RFC 9484 §4.2, RFC 9297 §3.4). Throws a
 * `RangeError` for a status outside 100..599.
 */
export function buildConnectIpResponse(status: number): [string, string][] {
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    throw new RangeError(`Cannot build response: status ${status} is not 100..599`);
  }
  const headers: [string, string][] = [[":status", String(status)]];
  if (status >= 200 && status < 300) headers.push([CAPSULE_PROTOCOL_HEADER, "?1"]);
  return headers;
}

/** The outcome of {@linkcode parseConnectIpRequest}: a scope, or the status to refuse with. */
export type ConnectIpRequestResult =
  | {
    readonly ok: true;
    readonly scope: ConnectIpScope;
    readonly authority: string;
    readonly path: string;
  }
  | { readonly ok: false; readonly status: number; readonly reason: string };

const REQUEST_PSEUDO_HEADERS = new Set([":method", ":scheme", ":authority", ":path", ":protocol"]);
// RFC 9114 §4.2: connection-specific fields make a message malformed.
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
]);
const FIELD_NAME = /^:?[!#$%&'*+\-.^_`|~0-9a-z]+$/;

function refuse(status: number, reason: string): ConnectIpRequestResult {
  return { ok: false, status, reason };
}

function normalizeAuthority(authority: string): string {
  return authority.toLowerCase().replace(/:443$/, "");
}

function percentDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/**
 * Validates a CONNECT-IP request's headers and extracts its scope, in the
 * manner of connect-ip-go's `ParseRequest`. Returns the status to refuse
 * with and a reason otherwise:
 *
 * - 400: a malformed message (RFC 9114 §4.1.2, §4.3.1): empty, uppercase or
 *   invalid names; CR, LF or NUL in a value; unknown, duplicate or late
 *   pseudo-headers; connection-specific headers; `te` other than `trailers`;
 *   `host` differing from `:authority`; `:protocol` on a method other than
 *   CONNECT (RFC 9220 §3); a plain CONNECT carrying `:scheme` or `:path`
 *   (RFC 9114 §4.4); a missing `:method`, `:scheme`, `:authority` or `:path`;
 *   a scheme other than `https`; an `:authority` other than the expected one
 *   (`options.authority`, else an absolute template's; compared without case
 *   and with `:443` ignored); `capsule-protocol` missing or not `?1`; a path
 *   that does not match the template; a target that is not `*` or an IP
 *   prefix (hostnames included); an ipproto that is not `*` or 0..255.
 * - 405: a method other than CONNECT.
 * - 501: a plain CONNECT (no `:protocol`) or a `:protocol` other than
 *   `connect-ip`: this server implements only CONNECT-IP.
 * - 500: `options.template` itself is invalid (a configuration error).
 *
 * `options.template` defaults to {@linkcode DEFAULT_URI_TEMPLATE}. Each
 * template variable matches a non-empty run of characters other than `/`,
 * which is then percent-decoded; `*` and `%2A` both mean any.
 */
export function parseConnectIpRequest(
  headers: readonly HeaderField[],
  options: { template?: string; authority?: string } = {},
): ConnectIpRequestResult {
  const pseudo = new Map<string, string>();
  let sawRegular = false;
  let host: string | undefined;
  for (const [name, value] of headers) {
    if (name === "") return refuse(400, "empty header name");
    if (/[A-Z]/.test(name)) return refuse(400, `uppercase header name "${name}"`);
    if (!FIELD_NAME.test(name)) return refuse(400, `invalid header name ${JSON.stringify(name)}`);
    if (/[\r\n\0]/.test(value)) return refuse(400, `invalid character in header "${name}"`);
    if (name.startsWith(":")) {
      if (sawRegular) return refuse(400, `pseudo-header ${name} after a regular header`);
      if (!REQUEST_PSEUDO_HEADERS.has(name)) {
        return refuse(400, `pseudo-header ${name} is not allowed in a request`);
      }
      if (pseudo.has(name)) return refuse(400, `duplicate pseudo-header ${name}`);
      pseudo.set(name, value);
      continue;
    }
    sawRegular = true;
    if (CONNECTION_SPECIFIC.has(name)) return refuse(400, `connection-specific header "${name}"`);
    if (name === "te" && value !== "trailers") {
      return refuse(400, `te header other than "trailers"`);
    }
    if (name === "host") {
      if (host !== undefined) return refuse(400, "duplicate host header");
      host = value;
    }
  }

  const method = pseudo.get(":method");
  const protocol = pseudo.get(":protocol");
  if (method === undefined || method === "") return refuse(400, "missing :method");
  if (method !== "CONNECT") {
    if (protocol !== undefined) return refuse(400, `:protocol with method ${method}`);
    return refuse(405, `expected CONNECT, got ${method}`);
  }
  if (protocol === undefined) {
    if (pseudo.has(":scheme") || pseudo.has(":path")) {
      return refuse(400, "plain CONNECT with :scheme or :path");
    }
    return refuse(501, "plain CONNECT is not supported; use connect-ip");
  }
  if (protocol !== CONNECT_IP_PROTOCOL) {
    return refuse(501, `unsupported :protocol ${JSON.stringify(protocol)}`);
  }
  const scheme = pseudo.get(":scheme");
  const authority = pseudo.get(":authority");
  const path = pseudo.get(":path");
  if (scheme === undefined || scheme === "") return refuse(400, "missing :scheme");
  if (authority === undefined || authority === "") return refuse(400, "missing :authority");
  if (path === undefined || path === "") return refuse(400, "missing :path");
  if (scheme !== "https") {
    return refuse(400, `:scheme must be https, got ${JSON.stringify(scheme)}`);
  }
  if (host !== undefined && normalizeAuthority(host) !== normalizeAuthority(authority)) {
    return refuse(400, `host "${host}" differs from :authority "${authority}"`);
  }

  const template = options.template ?? DEFAULT_URI_TEMPLATE;
  let parsed: ParsedTemplate;
  try {
    parsed = parseTemplate(template);
  } catch (error) {
    return refuse(500, error instanceof Error ? error.message : String(error));
  }
  const expected = options.authority ?? parsed.authority;
  if (expected !== undefined && normalizeAuthority(expected) !== normalizeAuthority(authority)) {
    return refuse(400, `:authority "${authority}" does not match "${expected}"`);
  }
  if (!isCapsuleProtocolEnabled(headers)) {
    return refuse(400, "missing or invalid capsule-protocol header (expected ?1)");
  }

  const match = parsed.matcher.exec(path);
  if (match === null) {
    return refuse(400, `path "${path}" does not match template "${template}"`);
  }
  let target: ConnectIpTarget = { kind: "any" };
  let ipProtocol: number | "any" = "any";
  let group = 1;
  for (const part of parsed.parts) {
    if ("literal" in part) continue;
    const raw = match[group++];
    const value = percentDecode(raw);
    if (part.variable === "target") {
      if (value === undefined) return refuse(400, `target "${raw}" is not valid percent-encoding`);
      if (value !== "*") {
        try {
          target = { kind: "prefix", prefix: parsePrefix(value) };
        } catch {
          return refuse(400, `target "${value}" is not an IP address, IP prefix or "*"`);
        }
      }
    } else {
      if (value === undefined) return refuse(400, `ipproto "${raw}" is not valid percent-encoding`);
      if (value !== "*") {
        if (!/^(?:0|[1-9][0-9]{0,2})$/.test(value) || Number(value) > 255) {
          return refuse(400, `ipproto "${value}" is not 0..255 or "*"`);
        }
        ipProtocol = Number(value);
      }
    }
  }
  return { ok: true, scope: { target, ipProtocol }, authority, path };
}

// ---------------------------------------------------------------------------
// Capsule-Protocol: a Structured Field Item that must be the Boolean true

const SF_KEY = /[a-z*][a-z0-9_\-.*]*/y;
const SF_NUMBER = /-?[0-9]{1,15}(?:\.[0-9]{1,3})?/y;
const SF_TOKEN = /[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/y;
const SF_BYTES = /:[A-Za-z0-9+/=]*:/y;

function matchAt(pattern: RegExp, text: string, at: number): number {
  pattern.lastIndex = at;
  const m = pattern.exec(text);
  return m === null ? -1 : at + m[0].length;
}

/** Returns the index after a Bare Item at `at` (RFC 8941 §4.2.3.1), or -1. */
function skipBareItem(text: string, at: number): number {
  const c = text[at];
  if (c === "?") return text[at + 1] === "0" || text[at + 1] === "1" ? at + 2 : -1;
  if (c === '"') {
    for (let i = at + 1; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (ch === 0x5c) {
        if (text[i + 1] !== '"' && text[i + 1] !== "\\") return -1;
        i++;
      } else if (ch === 0x22) {
        return i + 1;
      } else if (ch < 0x20 || ch > 0x7e) {
        return -1;
      }
    }
    return -1;
  }
  if (c === ":") return matchAt(SF_BYTES, text, at);
  if (c === "-" || (c >= "0" && c <= "9")) {
    const end = matchAt(SF_NUMBER, text, at);
    if (end < 0) return -1;
    const number = text.slice(at, end).replace("-", "");
    const dot = number.indexOf(".");
    return dot > 12 ? -1 : end; // decimals have at most 12 integer digits
  }
  return matchAt(SF_TOKEN, text, at);
}

/**
 * Whether the headers carry `capsule-protocol: ?1` (RFC 9297 §3.4): a
 * Structured Field Item (RFC 8941) that is the Boolean true, parameters
 * allowed and ignored. A missing field, `?0`, another type, an unparseable
 * value, or a field repeated into a List all count as not enabled. Names are
 * matched in lowercase, as HTTP/3 sends them.
 */
export function isCapsuleProtocolEnabled(headers: readonly HeaderField[]): boolean {
  const values: string[] = [];
  for (const [name, value] of headers) if (name === CAPSULE_PROTOCOL_HEADER) values.push(value);
  if (values.length === 0) return false;
  const text = values.join(", ").replace(/^[ \t]+|[ \t]+$/g, "");
  if (text[0] !== "?" || text[1] !== "1") return false;
  let at = 2;
  while (at < text.length) {
    if (text[at] !== ";") return false;
    at++;
    while (text[at] === " ") at++;
    at = matchAt(SF_KEY, text, at);
    if (at < 0) return false;
    if (text[at] === "=") {
      at = skipBareItem(text, at + 1);
      if (at < 0) return false;
    }
  }
  return true;
}
