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

import { errorMessage } from "../errors.ts";
import type { HeaderField } from "../h3/qpack.ts";
import { formatIp, formatPrefix, type IpPrefix, parsePrefix } from "../ip/ip_address.ts";

/** The default URI template of RFC 9484 §3 (path form). */
export const DEFAULT_URI_TEMPLATE = "/.well-known/masque/ip/{target}/{ipproto}/";

/** The `:protocol` value of a CONNECT-IP request (RFC 9484 §4). */
export const CONNECT_IP_PROTOCOL = "connect-ip";

/** The header that turns on the Capsule Protocol (RFC 9297 §3.4). */
export const CAPSULE_PROTOCOL_HEADER = "capsule-protocol";

/**
 * The project's own request header (not RFC 9484's): a random secret the
 * client sends with every request. A relay moves an address that one
 * session holds to another that asks for it with ADDRESS_REQUEST only when
 * both requests carried the same key and came from the same user: that is
 * how the client moves its tunnel to a new session (HTTP/2 to HTTP/3)
 * without changing its addresses. Other clients do not send it and lose
 * nothing.
 */
export const CLIENT_KEY_HEADER = "masque-vpn-client-key";

/** The longest client key a relay keeps, characters; a longer one is ignored. */
export const MAX_CLIENT_KEY_LENGTH = 64;

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

// ---------------------------------------------------------------------------
// URI templates (RFC 9484 §3 with RFC 6570 levels 1 to 3): the variables
// `target` and `ipproto` in simple expressions (`{target}`,
// `{target,ipproto}`) and form-style query expressions (`{?target,ipproto}`,
// `{&target,ipproto}`); a template may also have no variable at all.

/** A URI template variable that RFC 9484 §4.6 gives a meaning. */
export type ConnectIpVariable = "target" | "ipproto";

/**
 * One piece of a parsed template: literal text, a simple expression
 * (RFC 6570 §3.2.2: values comma-separated), or a form-style query
 * expression (RFC 6570 §3.2.8 `?`, §3.2.9 `&`: `name=value` pairs).
 */
export type ConnectIpTemplatePart =
  | { readonly kind: "literal"; readonly text: string }
  | { readonly kind: "simple"; readonly names: readonly ConnectIpVariable[] }
  | {
    readonly kind: "query";
    readonly operator: "?" | "&";
    readonly names: readonly ConnectIpVariable[];
  };

/** A CONNECT-IP URI template checked by {@linkcode parseConnectIpTemplate}. */
export interface ConnectIpTemplate {
  /** The template as written. */
  readonly source: string;
  /** The authority of an absolute `https://` template, as written; `undefined` for a path. */
  readonly authority: string | undefined;
  /** The path and query part of the template; starts with `/`. */
  readonly pathAndQuery: string;
  /** The variables the template contains, in order (none, one or both). */
  readonly variables: readonly ConnectIpVariable[];
  readonly parts: readonly ConnectIpTemplatePart[];
}

/** The outcome of {@linkcode matchConnectIpTemplate}: the raw (still percent-encoded) values. */
export type ConnectIpTemplateMatch =
  | { readonly ok: true; readonly values: Readonly<Partial<Record<ConnectIpVariable, string>>> }
  | { readonly ok: false; readonly reason: string };

/**
 * Whether a character can be part of an expanded variable's value: RFC 3986
 * unreserved characters, `%` of percent-encoding (RFC 6570 §3.2.1 encodes
 * everything else), and `*`, the wildcard of RFC 9484 §4.6, which clients
 * send unencoded as RFC 9484's own examples do.
 */
function isValueChar(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || // 0-9
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x61 && code <= 0x7a) || // a-z
    code === 0x2d || code === 0x2e || code === 0x5f || code === 0x7e || // - . _ ~
    code === 0x25 || code === 0x2a; // % *
}

/**
 * Parses and checks a CONNECT-IP URI template (RFC 9484 §3): an absolute
 * `https://authority/path` template, or (for a relay's own configuration) a
 * path starting with `/`. Throws an `Error` that names the rule for what
 * RFC 9484 §3 forbids (a scheme other than https, an empty authority,
 * variables in the authority, characters outside 0x21-0x7E, the `+`, `#`,
 * `.`, `/` and `;` operators, level-4 modifiers such as `{target:3}`) and for
 * what this implementation cannot serve: a variable other than `target` and
 * `ipproto` (RFC 9484 §3 allows others but gives them no meaning, so this
 * side has no value for them), a variable used twice, a `{?...}`/`{&...}`
 * expression that does not end the template, and a simple expression
 * followed by a character its value may contain (`{target}.x`), whose end
 * could not be found without backtracking.
 */
export function parseConnectIpTemplate(template: string): ConnectIpTemplate {
  const invalid = (why: string) => new Error(`Invalid URI template "${template}": ${why}`);
  for (let i = 0; i < template.length; i++) {
    const code = template.charCodeAt(i);
    if (code < 0x21 || code > 0x7e) {
      const shown = code === 0x20
        ? "a space"
        : `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
      throw invalid(
        `${shown} at offset ${i} is not allowed (RFC 9484 §3: ASCII 0x21-0x7E only; percent-encode it)`,
      );
    }
  }
  let authority: string | undefined;
  let rest = template;
  if (!template.startsWith("/")) {
    const separator = template.indexOf("://");
    if (separator <= 0) {
      throw invalid("it must be an absolute https:// URI template or a path starting with '/'");
    }
    const scheme = template.slice(0, separator).toLowerCase();
    if (scheme !== "https") throw invalid(`the scheme must be https, not "${scheme}"`);
    let end = separator + 3;
    while (end < template.length && !"/?#".includes(template[end])) end++;
    authority = template.slice(separator + 3, end);
    if (authority === "") throw invalid("the authority is empty");
    if (authority.includes("{") || authority.includes("}")) {
      throw invalid("variables must be in the path or query, not in the authority (RFC 9484 §3)");
    }
    rest = template.slice(end);
    if (rest === "") throw invalid("the path is empty (RFC 9484 §3: it must start with '/')");
  }
  if (!rest.startsWith("/")) throw invalid("the path must start with '/'");

  const parts: ConnectIpTemplatePart[] = [];
  const variables: ConnectIpVariable[] = [];
  let inQuery = false;
  let i = 0;
  while (i < rest.length) {
    const open = rest.indexOf("{", i);
    const close = rest.indexOf("}", i);
    if (close >= 0 && (open < 0 || close < open)) throw invalid("'}' without '{'");
    const literalEnd = open < 0 ? rest.length : open;
    if (literalEnd > i) {
      const text = rest.slice(i, literalEnd);
      if (text.includes("#")) throw invalid("a fragment ('#') is never sent in a request");
      parts.push({ kind: "literal", text });
      if (text.includes("?")) inQuery = true;
    }
    if (open < 0) break;
    const end = rest.indexOf("}", open);
    if (end < 0) throw invalid("'{' without '}'");
    const body = rest.slice(open + 1, end);
    if (body.includes("{")) throw invalid("'{' inside an expression");
    const expression = `{${body}}`;
    let operator = "";
    if (body[0] === "?" || body[0] === "&") {
      operator = body[0];
    } else if (body[0] !== undefined && "+#./;".includes(body[0])) {
      throw invalid(`${expression}: the "${body[0]}" operator is not allowed (RFC 9484 §3)`);
    } else if (body[0] !== undefined && "=,!@|".includes(body[0])) {
      throw invalid(
        `${expression}: "${body[0]}" is reserved for future extensions (RFC 6570 §2.2)`,
      );
    }
    const list = body.slice(operator.length);
    if (list === "") throw invalid(`${expression} names no variable`);
    const names: ConnectIpVariable[] = [];
    for (const name of list.split(",")) {
      if (name.includes(":") || name.endsWith("*")) {
        throw invalid(
          `${expression}: "${name}" has a level-4 value modifier (RFC 9484 §3: level 3 or lower)`,
        );
      }
      if (name !== "target" && name !== "ipproto") {
        throw invalid(
          `${expression}: unsupported variable "${name}" (only target and ipproto, RFC 9484 §4.6, have a value here)`,
        );
      }
      if (variables.includes(name)) throw invalid(`variable "${name}" appears twice`);
      variables.push(name);
      names.push(name);
    }
    const previous = parts[parts.length - 1];
    if (operator === "") {
      if (previous?.kind === "simple") {
        throw invalid("two variables without a literal between them cannot be matched");
      }
      const next = rest.charCodeAt(end + 1);
      if (end + 1 < rest.length && isValueChar(next)) {
        throw invalid(
          `${expression} is followed by "${
            rest[end + 1]
          }", which its value may contain; put a character such as '/', '?', '&' or '=' after it`,
        );
      }
      parts.push({ kind: "simple", names });
    } else {
      if (operator === "?" && inQuery) {
        throw invalid(`${expression} cannot follow a '?' of the template; use {&${list}}`);
      }
      if (operator === "&" && !inQuery) {
        throw invalid(`${expression} needs a '?' before it in the template; use {?${list}}`);
      }
      if (end + 1 !== rest.length) throw invalid(`${expression} must end the template`);
      parts.push({ kind: "query", operator: operator as "?" | "&", names });
      inQuery = true;
    }
    i = end + 1;
  }
  return { source: template, authority, pathAndQuery: rest, variables, parts };
}

/** Percent-encodes everything but RFC 3986 unreserved characters (RFC 6570 §3.2.1). */
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
 * Expands a CONNECT-IP URI template (RFC 9484 §3, §4.6; RFC 6570 §3.2.2 and
 * §3.2.8-9) into the request's `:path` (path and query). The target is
 * written as an address for a /32 or /128 and as `address/length` otherwise,
 * percent-encoded (`:` as `%3A`, `/` as `%2F`); the wildcard is a literal
 * `*`, as in RFC 9484's examples, also in a query (`?target=*&ipproto=*`).
 * An absolute template yields only its path and query. Throws an `Error`
 * for an invalid template (see {@linkcode parseConnectIpTemplate}) or for a
 * scope the template cannot express (a target prefix without a `target`
 * variable), and a `RangeError` for an IP protocol outside 0..255.
 */
export function expandConnectIpPath(
  template: string | ConnectIpTemplate,
  scope: ConnectIpScope,
): string {
  const parsed = typeof template === "string" ? parseConnectIpTemplate(template) : template;
  const ipproto = formatIpProtocol(scope.ipProtocol);
  const target = scope.target.kind === "any" ? "*" : encodeUnreserved(formatTarget(scope.target));
  for (const [name, value] of [["target", target], ["ipproto", ipproto]] as const) {
    if (value !== "*" && !parsed.variables.includes(name)) {
      throw new Error(
        `Cannot expand URI template "${parsed.source}": it has no ${name} variable to ask for ${
          name === "target" ? formatTarget(scope.target) : ipproto
        }`,
      );
    }
  }
  const valueOf = (name: ConnectIpVariable) => name === "target" ? target : ipproto;
  let path = "";
  for (const part of parsed.parts) {
    if (part.kind === "literal") path += part.text;
    else if (part.kind === "simple") path += part.names.map(valueOf).join(",");
    else path += part.operator + part.names.map((name) => `${name}=${valueOf(name)}`).join("&");
  }
  return path;
}

/**
 * Matches a request's `:path` against a template in one pass, without
 * backtracking (the path comes from the peer): literals must be equal byte
 * for byte; a simple expression's value is the longest non-empty run of
 * value characters (unreserved, `%`, `*`), which
 * {@linkcode parseConnectIpTemplate} made sure the following literal cannot
 * continue; a query expression takes nothing (every variable then means
 * `*`, RFC 9484 §4.6) or `name=value` pairs of its own variables in any
 * order, each at most once and never empty (RFC 9484 §3). Returns the raw
 * values, still percent-encoded, or the reason the path does not match.
 */
export function matchConnectIpTemplate(
  template: ConnectIpTemplate,
  path: string,
): ConnectIpTemplateMatch {
  const mismatch: ConnectIpTemplateMatch = {
    ok: false,
    reason: `path "${path}" does not match template "${template.source}"`,
  };
  const values: Partial<Record<ConnectIpVariable, string>> = {};
  let at = 0;
  for (const part of template.parts) {
    if (part.kind === "literal") {
      if (!path.startsWith(part.text, at)) return mismatch;
      at += part.text.length;
    } else if (part.kind === "simple") {
      for (let n = 0; n < part.names.length; n++) {
        if (n > 0) {
          if (path[at] !== ",") return mismatch;
          at++;
        }
        const start = at;
        while (at < path.length && isValueChar(path.charCodeAt(at))) at++;
        if (at === start) return mismatch;
        values[part.names[n]] = path.slice(start, at);
      }
    } else {
      if (at === path.length) break;
      if (path[at] !== part.operator) return mismatch;
      at++;
      for (;;) {
        let end = at;
        let equals = -1;
        while (end < path.length && path[end] !== "&") {
          if (equals < 0 && path[end] === "=") equals = end;
          end++;
        }
        const text = path.slice(at, equals < 0 ? end : equals);
        const name = part.names.find((n) => n === text);
        if (name === undefined) {
          return {
            ok: false,
            reason: `query parameter ${
              JSON.stringify(text)
            } is not in template "${template.source}"`,
          };
        }
        if (values[name] !== undefined) {
          return { ok: false, reason: `query parameter "${name}" appears twice` };
        }
        const value = equals < 0 ? "" : path.slice(equals + 1, end);
        for (let k = 0; k < value.length; k++) {
          if (!isValueChar(value.charCodeAt(k))) return mismatch;
        }
        if (value === "") {
          return { ok: false, reason: `query parameter "${name}" is empty (RFC 9484 §3)` };
        }
        values[name] = value;
        if (end === path.length) break;
        at = end + 1;
      }
      at = path.length;
    }
  }
  return at === path.length ? { ok: true, values } : mismatch;
}

/** The last template parsed for {@linkcode parseConnectIpRequest}: a relay serves one. */
let cachedTemplate: ConnectIpTemplate | undefined;

function parseTemplateCached(template: string): ConnectIpTemplate {
  if (cachedTemplate?.source !== template) cachedTemplate = parseConnectIpTemplate(template);
  return cachedTemplate;
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

/**
 * The outcome of {@linkcode parseConnectIpRequest}: a scope, or the status to
 * refuse with. A refusal `about` the `"message"` is one any HTTP/3 server
 * gives (a malformed request, a method or protocol it does not serve); one
 * `about` the `"resource"` says something about this server's connect-ip
 * resource (its authority, its path, the scope's syntax), which a relay
 * reveals only to an authenticated client (probe resistance).
 */
export type ConnectIpRequestResult =
  | {
    readonly ok: true;
    readonly scope: ConnectIpScope;
    readonly authority: string;
    readonly path: string;
  }
  | {
    readonly ok: false;
    readonly status: number;
    readonly reason: string;
    readonly about: "message" | "resource";
  };

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

function refuse(
  status: number,
  reason: string,
  about: "message" | "resource" = "message",
): ConnectIpRequestResult {
  return { ok: false, status, reason, about };
}

function normalizeAuthority(authority: string): string {
  return authority.toLowerCase().replace(/:443$/, "");
}

/** A decimal 0..255 without leading zeros, or undefined (no regular expression: peer input). */
function parseIpProtocol(text: string): number | undefined {
  if (text.length === 0 || text.length > 3 || (text.length > 1 && text[0] === "0")) {
    return undefined;
  }
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const digit = text.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9) return undefined;
    value = value * 10 + digit;
  }
  return value <= 255 ? value : undefined;
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
 *   and with `:443` ignored); `capsule-protocol` missing or not `?1`; a
 *   target that is not `*` or an IP prefix (hostnames included); an ipproto
 *   that is not `*` or 0..255; a query parameter the template does not
 *   have, twice, or empty.
 * - 404: a path that does not match the template: no connect-ip resource
 *   there.
 * - 405: a method other than CONNECT.
 * - 501: a plain CONNECT (no `:protocol`) or a `:protocol` other than
 *   `connect-ip`: this server implements only CONNECT-IP.
 * - 500: `options.template` itself is invalid (a configuration error).
 *
 * The checks from the template on (authority, `capsule-protocol`, path,
 * target, ipproto) are `about: "resource"`; the others `"message"`.
 *
 * `options.template` defaults to {@linkcode DEFAULT_URI_TEMPLATE}; the path
 * is matched by {@linkcode matchConnectIpTemplate} (one pass, no regular
 * expression), each value is then percent-decoded; `*`, `%2A` and a
 * variable left out (RFC 9484 §4.6) all mean any.
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
  let parsed: ConnectIpTemplate;
  try {
    parsed = parseTemplateCached(template);
  } catch (error) {
    return refuse(500, errorMessage(error), "resource");
  }
  const expected = options.authority ?? parsed.authority;
  if (expected !== undefined && normalizeAuthority(expected) !== normalizeAuthority(authority)) {
    return refuse(400, `:authority "${authority}" does not match "${expected}"`, "resource");
  }
  if (!isCapsuleProtocolEnabled(headers)) {
    return refuse(400, "missing or invalid capsule-protocol header (expected ?1)", "resource");
  }

  const match = matchConnectIpTemplate(parsed, path);
  if (!match.ok) return refuse(404, match.reason, "resource");
  let target: ConnectIpTarget = { kind: "any" };
  let ipProtocol: number | "any" = "any";
  const rawTarget = match.values.target;
  if (rawTarget !== undefined) {
    const value = percentDecode(rawTarget);
    if (value === undefined) {
      return refuse(400, `target "${rawTarget}" is not valid percent-encoding`, "resource");
    }
    if (value !== "*") {
      try {
        target = { kind: "prefix", prefix: parsePrefix(value) };
      } catch {
        return refuse(400, `target "${value}" is not an IP address, IP prefix or "*"`, "resource");
      }
    }
  }
  const rawIpproto = match.values.ipproto;
  if (rawIpproto !== undefined) {
    const value = percentDecode(rawIpproto);
    if (value === undefined) {
      return refuse(400, `ipproto "${rawIpproto}" is not valid percent-encoding`, "resource");
    }
    if (value !== "*") {
      const number = parseIpProtocol(value);
      if (number === undefined) {
        return refuse(400, `ipproto "${value}" is not 0..255 or "*"`, "resource");
      }
      ipProtocol = number;
    }
  }
  return { ok: true, scope: { target, ipProtocol }, authority, path };
}

// ---------------------------------------------------------------------------
// Capsule-Protocol: a Structured Field Item that must be the Boolean true
//
// Parsed by hand in one pass, character by character: the value comes from
// the peer, and no regular expression runs on it (a backtracking trim here
// once cost a relay hundreds of milliseconds per request).

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isLcAlpha(c: number): boolean {
  return c >= 0x61 && c <= 0x7a;
}

function isAlpha(c: number): boolean {
  return isLcAlpha(c) || (c >= 0x41 && c <= 0x5a);
}

/** tchar (RFC 9110 §5.6.2): a token character. */
function isTchar(c: number): boolean {
  if (isAlpha(c) || isDigit(c)) return true;
  switch (c) {
    case 0x21: // !
    case 0x23: // #
    case 0x24: // $
    case 0x25: // %
    case 0x26: // &
    case 0x27: // '
    case 0x2a: // *
    case 0x2b: // +
    case 0x2d: // -
    case 0x2e: // .
    case 0x5e: // ^
    case 0x5f: // _
    case 0x60: // `
    case 0x7c: // |
    case 0x7e: // ~
      return true;
  }
  return false;
}

/** Characters of a Byte Sequence's base64 (RFC 8941 §4.2.7). */
function isBase64(c: number): boolean {
  return isAlpha(c) || isDigit(c) || c === 0x2b || c === 0x2f || c === 0x3d;
}

/** Returns the index after a Key at `at` (RFC 8941 §4.2.3.3), or -1. */
function skipKey(text: string, at: number): number {
  const first = text.charCodeAt(at);
  if (!isLcAlpha(first) && first !== 0x2a) return -1;
  let i = at + 1;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (!isLcAlpha(c) && !isDigit(c) && c !== 0x5f && c !== 0x2d && c !== 0x2e && c !== 0x2a) {
      break;
    }
  }
  return i;
}

/** Returns the index after an Integer or Decimal at `at` (RFC 8941 §4.2.4), or -1. */
function skipNumber(text: string, at: number): number {
  let i = text.charCodeAt(at) === 0x2d ? at + 1 : at; // "-"
  const start = i;
  while (i < text.length && isDigit(text.charCodeAt(i))) i++;
  const integerDigits = i - start;
  if (integerDigits === 0) return -1;
  if (text.charCodeAt(i) !== 0x2e) return integerDigits > 15 ? -1 : i; // no "."
  if (integerDigits > 12) return -1;
  const fraction = ++i;
  while (i < text.length && isDigit(text.charCodeAt(i))) i++;
  const fractionDigits = i - fraction;
  return fractionDigits === 0 || fractionDigits > 3 ? -1 : i;
}

/** Returns the index after a String at `at` (RFC 8941 §4.2.5), or -1. */
function skipString(text: string, at: number): number {
  for (let i = at + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c) { // backslash: only \" and \\ are escapes
      const next = text.charCodeAt(i + 1);
      if (next !== 0x22 && next !== 0x5c) return -1;
      i++;
    } else if (c === 0x22) {
      return i + 1;
    } else if (c < 0x20 || c > 0x7e) {
      return -1;
    }
  }
  return -1;
}

/** Returns the index after a Bare Item at `at` (RFC 8941 §4.2.3.1), or -1. */
function skipBareItem(text: string, at: number): number {
  const c = text.charCodeAt(at);
  if (c === 0x3f) { // "?": Boolean
    const value = text.charCodeAt(at + 1);
    return value === 0x30 || value === 0x31 ? at + 2 : -1;
  }
  if (c === 0x22) return skipString(text, at); // '"'
  if (c === 0x3a) { // ":": Byte Sequence
    let i = at + 1;
    while (i < text.length && isBase64(text.charCodeAt(i))) i++;
    return text.charCodeAt(i) === 0x3a ? i + 1 : -1;
  }
  if (c === 0x2d || isDigit(c)) return skipNumber(text, at);
  if (isAlpha(c) || c === 0x2a) { // Token
    let i = at + 1;
    while (i < text.length) {
      const t = text.charCodeAt(i);
      if (!isTchar(t) && t !== 0x3a && t !== 0x2f) break;
      i++;
    }
    return i;
  }
  return -1;
}

/** Whether `c` is optional whitespace around a field value (RFC 9110 §5.5: SP or HTAB). */
function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/**
 * The scope (RFC 9484 §4.6) a request `path` asks for under `template`
 * (default RFC 9484's well-known path): its `target` and `ipproto`
 * variables percent-decoded, `*` or absent meaning any. A path that does
 * not match the template, or holds a value that is not an address, prefix
 * or protocol number, gets 400 and why. For transports whose request is not
 * a connect-ip request (the WebTransport convention) but whose path still
 * names the scope.
 */
export function parseConnectIpPath(
  path: string,
  template: string = DEFAULT_URI_TEMPLATE,
):
  | { readonly ok: true; readonly scope: ConnectIpScope }
  | { readonly ok: false; readonly status: number; readonly reason: string } {
  let parsed: ConnectIpTemplate;
  try {
    parsed = parseTemplateCached(template);
  } catch (error) {
    return { ok: false, status: 500, reason: errorMessage(error) };
  }
  return scopeFromPath(parsed, path);
}

function scopeFromPath(
  parsed: ConnectIpTemplate,
  path: string,
): { ok: true; scope: ConnectIpScope } | { ok: false; status: number; reason: string } {
  const refuse = (status: number, reason: string) => ({ ok: false as const, status, reason });
  const match = matchConnectIpTemplate(parsed, path);
  // A path outside the template is not found, as over HTTP/3.
  if (!match.ok) return refuse(404, match.reason);
  let target: ConnectIpTarget = { kind: "any" };
  let ipProtocol: number | "any" = "any";
  const rawTarget = match.values.target;
  if (rawTarget !== undefined) {
    const value = percentDecode(rawTarget);
    if (value === undefined) {
      return refuse(400, `target "${rawTarget}" is not valid percent-encoding`);
    }
    if (value !== "*") {
      try {
        target = { kind: "prefix", prefix: parsePrefix(value) };
      } catch {
        return refuse(400, `target "${value}" is not an IP address, IP prefix or "*"`);
      }
    }
  }
  const rawIpproto = match.values.ipproto;
  if (rawIpproto !== undefined) {
    const value = percentDecode(rawIpproto);
    if (value === undefined) {
      return refuse(400, `ipproto "${rawIpproto}" is not valid percent-encoding`);
    }
    if (value !== "*") {
      const number = parseIpProtocol(value);
      if (number === undefined) return refuse(400, `ipproto "${value}" is not 0..255 or "*"`);
      ipProtocol = number;
    }
  }
  return { ok: true, scope: { target, ipProtocol } };
}

/**
 * Whether the headers carry `capsule-protocol: ?1` (RFC 9297 §3.4): a
 * Structured Field Item (RFC 8941) that is the Boolean true, parameters
 * allowed and ignored. A missing field, `?0`, another type, an unparseable
 * value, or a field repeated into a List all count as not enabled. Names are
 * matched in lowercase, as HTTP/3 sends them. Runs in time linear in the
 * value's length, whatever it holds.
 */
export function isCapsuleProtocolEnabled(headers: readonly HeaderField[]): boolean {
  const values: string[] = [];
  for (const [name, value] of headers) if (name === CAPSULE_PROTOCOL_HEADER) values.push(value);
  if (values.length === 0) return false;
  const text = values.join(", ");
  let at = 0;
  let end = text.length;
  while (at < end && isOws(text.charCodeAt(at))) at++;
  while (end > at && isOws(text.charCodeAt(end - 1))) end--;
  if (text.charCodeAt(at) !== 0x3f || text.charCodeAt(at + 1) !== 0x31 || at + 2 > end) {
    return false;
  }
  at += 2;
  // Parameters (RFC 8941 §4.2.3.2): *( ";" *SP key [ "=" bare-item ] )
  const item = text.slice(0, end);
  while (at < end) {
    if (item.charCodeAt(at) !== 0x3b) return false; // ";"
    at++;
    while (item.charCodeAt(at) === 0x20) at++;
    at = skipKey(item, at);
    if (at < 0) return false;
    if (item.charCodeAt(at) === 0x3d) { // "="
      at = skipBareItem(item, at + 1);
      if (at < 0) return false;
    }
  }
  return true;
}
