/**
 * The relay's users file (`--users FILE`): JSON with, per user, a name, the
 * hash of its token and/or password, and its policy. Written by `deno task
 * users` (`relay/users_main.ts`), read at start and on SIGHUP.
 *
 * ```json
 * {
 *   "users": [
 *     {
 *       "name": "alice",
 *       "token": { "id": "q3Xk0aZB", "hash": "$scrypt$ln=14,r=8,p=1$...$..." },
 *       "password": "$scrypt$ln=14,r=8,p=1$...$...",
 *       "routes": ["198.18.1.0/24", "fd00:0:0:2::/64"],
 *       "protocols": [6, 17],
 *       "maxSessions": 2,
 *       "rate": "50mbit",
 *       "address4": "198.18.100.10",
 *       "address6": "fd00:100::10"
 *     }
 *   ]
 * }
 * ```
 *
 * Only `name` and one of `token` / `password` are required. A file is read
 * whole or not at all: {@linkcode parseUsersFile} returns every problem,
 * each naming the user and the field, and no users.
 *
 * Pure: the caller reads and writes the file.
 *
 * @module
 */

import type { IpPrefix } from "../ip/ip_address.ts";
import { formatIp, formatPrefix, parseIp, parsePrefix, prefixContains } from "../ip/ip_address.ts";
import { base64UrlLength, isBase64UrlText, TOKEN_ID_BYTES } from "./credentials.ts";
import { DEFAULT_USER_MAX_SESSIONS, MAX_USER_SESSIONS } from "./policy.ts";
import type { UserPolicy } from "./policy.ts";
import { parseScryptHash } from "./scrypt_hash.ts";
import type { ScryptHash } from "./scrypt_hash.ts";

/** A user's token as stored: its public id and the hash of its secret. */
export interface StoredToken {
  readonly id: string;
  /** The PHC string, as in the file. */
  readonly hashText: string;
  readonly hash: ScryptHash;
}

/** One user as the relay knows it. */
export interface UserEntry {
  readonly name: string;
  readonly token?: StoredToken;
  /** The password's hash, for HTTP Basic. */
  readonly password?: { readonly hashText: string; readonly hash: ScryptHash };
  readonly policy: UserPolicy;
}

/** The outcome of {@linkcode parseUsersFile}. */
export type UsersFileResult =
  | { readonly ok: true; readonly users: readonly UserEntry[] }
  | { readonly ok: false; readonly errors: readonly string[] };

/** The longest user name, characters. */
export const MAX_USER_NAME_LENGTH = 64;
/** The most users a file may hold. */
export const MAX_USERS = 100_000;

const USER_FIELDS = [
  "name",
  "token",
  "password",
  "routes",
  "protocols",
  "maxSessions",
  "rate",
  "address4",
  "address6",
] as const;

const IP_PROTOCOL_NAMES: Readonly<Record<string, number>> = {
  icmp: 1,
  tcp: 6,
  udp: 17,
  ipv6_icmp: 58,
  icmpv6: 58,
};

/**
 * Whether `name` is a user name: 1..64 of letters, digits, `.`, `_`, `-`
 * and `@`, not starting with `-` (so it is never read as a flag). No `:`,
 * which HTTP Basic cannot carry in a user name (RFC 7617 §2).
 */
export function isUserName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_USER_NAME_LENGTH || name[0] === "-") return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x5f || c === 0x2d || c === 0x40;
    if (!ok) return false;
  }
  return true;
}

const RATE_UNITS: readonly [string, number][] = [
  ["gbit", 1e9],
  ["mbit", 1e6],
  ["kbit", 1e3],
  ["bit", 1],
];

/** The smallest and largest rate, bits per second. */
export const MIN_RATE_BITS = 8_000;
export const MAX_RATE_BITS = 1e12;

/**
 * Reads a rate: `50mbit`, `500kbit`, `1.5gbit`, `64000bit` or a plain
 * number of bits per second (decimal units, as `tc` writes them; `mbps`
 * is refused because `tc` reads it as megabytes). Returns bits per second
 * or what is wrong.
 */
export function parseRate(text: string): number | string {
  const lower = text.trim().toLowerCase();
  let multiplier = 1;
  let number = lower;
  for (const [unit, factor] of RATE_UNITS) {
    if (lower.endsWith(unit)) {
      multiplier = factor;
      number = lower.slice(0, -unit.length);
      break;
    }
  }
  let dots = 0;
  for (let i = 0; i < number.length; i++) {
    const c = number.charCodeAt(i);
    if (c === 0x2e) dots++;
    else if (c < 0x30 || c > 0x39) number = "";
  }
  if (number === "" || number === "." || dots > 1 || number.length > 15) {
    return `"${text}" is not a rate like 50mbit, 500kbit or 1gbit`;
  }
  const bits = Math.round(Number(number) * multiplier);
  if (!(bits >= MIN_RATE_BITS && bits <= MAX_RATE_BITS)) {
    return `"${text}" is outside 8kbit..1000gbit`;
  }
  return bits;
}

/** A rate in the units {@linkcode parseRate} reads, as short as exact: `50mbit`. */
export function formatRate(bits: number): string {
  for (const [unit, factor] of RATE_UNITS) {
    if (bits % factor === 0) return `${bits / factor}${unit}`;
  }
  return `${bits}bit`;
}

/** Reads one IP protocol: a number 1..255 or `tcp`, `udp`, `icmp`, `icmpv6`. */
export function parseIpProtocol(value: unknown): number | string {
  if (typeof value === "string") {
    const named = IP_PROTOCOL_NAMES[value.toLowerCase().replace("-", "_")];
    if (named !== undefined) return named;
    const n = Number(value);
    if (value.trim() !== "" && Number.isInteger(n)) return parseIpProtocol(n);
    return `"${value}" is not an IP protocol (1..255, tcp, udp, icmp, icmpv6)`;
  }
  if (typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= 255) {
    return value;
  }
  return `${JSON.stringify(value)} is not an IP protocol (1..255, tcp, udp, icmp, icmpv6)`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Reads one user entry; pushes problems (without the user prefix) to `problems`. */
function readUser(raw: Record<string, unknown>, problems: string[]): UserEntry | undefined {
  const before = problems.length;
  for (const key of Object.keys(raw)) {
    if (!(USER_FIELDS as readonly string[]).includes(key)) {
      problems.push(`field "${key}" is unknown (known: ${USER_FIELDS.join(", ")})`);
    }
  }
  const name = raw.name;
  if (typeof name !== "string" || !isUserName(name)) {
    problems.push(
      `field "name" must be 1..${MAX_USER_NAME_LENGTH} letters, digits, '.', '_', '-' or '@', ` +
        `not starting with '-'`,
    );
  }
  let token: StoredToken | undefined;
  if (raw.token !== undefined) {
    const t = raw.token;
    const idLength = base64UrlLength(TOKEN_ID_BYTES);
    if (!isObject(t) || Object.keys(t).some((k) => k !== "id" && k !== "hash")) {
      problems.push(`field "token" must be an object with "id" and "hash"`);
    } else if (typeof t.id !== "string" || t.id.length !== idLength || !isBase64UrlText(t.id)) {
      problems.push(`field "token.id" must be ${idLength} base64url characters`);
    } else {
      const hash = typeof t.hash === "string" ? parseScryptHash(t.hash) : "is not a string";
      if (typeof hash === "string") problems.push(`field "token.hash" ${hash}`);
      else token = { id: t.id, hashText: t.hash as string, hash };
    }
  }
  let password: UserEntry["password"];
  if (raw.password !== undefined) {
    const hash = typeof raw.password === "string"
      ? parseScryptHash(raw.password)
      : "is not a string";
    if (typeof hash === "string") problems.push(`field "password" ${hash}`);
    else password = { hashText: raw.password as string, hash };
  }
  if (raw.token === undefined && raw.password === undefined) {
    problems.push(`has neither "token" nor "password": it could never log in`);
  }
  let routes: IpPrefix[] | undefined;
  if (raw.routes !== undefined) {
    if (!Array.isArray(raw.routes)) problems.push(`field "routes" must be a list of prefixes`);
    else {
      routes = [];
      raw.routes.forEach((text, i) => {
        try {
          if (typeof text !== "string") throw new Error(`${JSON.stringify(text)} is not text`);
          routes!.push(parsePrefix(text));
        } catch (error) {
          problems.push(`field "routes[${i}]": ${(error as Error).message}`);
        }
      });
    }
  }
  let protocols: number[] | undefined;
  if (raw.protocols !== undefined) {
    if (!Array.isArray(raw.protocols) || raw.protocols.length === 0) {
      problems.push(`field "protocols" must be a non-empty list of IP protocols`);
    } else {
      protocols = [];
      raw.protocols.forEach((value, i) => {
        const protocol = parseIpProtocol(value);
        if (typeof protocol === "string") problems.push(`field "protocols[${i}]": ${protocol}`);
        else if (!protocols!.includes(protocol)) protocols!.push(protocol);
      });
    }
  }
  let maxSessions = DEFAULT_USER_MAX_SESSIONS;
  if (raw.maxSessions !== undefined) {
    const n = raw.maxSessions;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > MAX_USER_SESSIONS) {
      problems.push(
        `field "maxSessions" must be an integer 1..${MAX_USER_SESSIONS}, not ${JSON.stringify(n)}`,
      );
    } else maxSessions = n;
  }
  let rateBitsPerSecond: number | undefined;
  if (raw.rate !== undefined) {
    const parsed = typeof raw.rate === "string"
      ? parseRate(raw.rate)
      : typeof raw.rate === "number"
      ? parseRate(String(raw.rate))
      : `${JSON.stringify(raw.rate)} is not a rate like 50mbit`;
    if (typeof parsed === "string") problems.push(`field "rate": ${parsed}`);
    else rateBitsPerSecond = parsed;
  }
  const address = (field: "address4" | "address6", length: number) => {
    const text = raw[field];
    if (text === undefined) return undefined;
    const parsed = typeof text === "string" ? parseIp(text) : undefined;
    if (parsed === undefined || parsed.length !== length) {
      problems.push(
        `field "${field}" must be an IPv${length === 4 ? 4 : 6} address, not ${
          JSON.stringify(text)
        }`,
      );
      return undefined;
    }
    return parsed;
  };
  const address4 = address("address4", 4);
  const address6 = address("address6", 16);
  if (problems.length > before) return undefined;
  const policy: UserPolicy = Object.freeze({
    maxSessions,
    ...(routes !== undefined ? { routes: Object.freeze(routes) } : {}),
    ...(protocols !== undefined
      ? { protocols: Object.freeze(protocols.sort((a, b) => a - b)) }
      : {}),
    ...(rateBitsPerSecond !== undefined ? { rateBitsPerSecond } : {}),
    ...(address4 !== undefined ? { address4 } : {}),
    ...(address6 !== undefined ? { address6 } : {}),
  });
  return Object.freeze({
    name: name as string,
    ...(token ? { token } : {}),
    ...(password ? { password } : {}),
    policy,
  });
}

/**
 * Reads a users file's text. Returns every user, or every problem found
 * and no user: the JSON itself, the top level (an object with `users`, a
 * list), and for each user each field, named like
 * `users[1] "bob": field "maxSessions" must be an integer 1..100000, not 0`;
 * then names and token ids given twice and fixed addresses given to two
 * users. Messages never quote a hash.
 */
export function parseUsersFile(text: string): UsersFileResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { ok: false, errors: [`not JSON: ${(error as Error).message}`] };
  }
  if (!isObject(json) || !Array.isArray(json.users)) {
    return { ok: false, errors: [`the top level must be an object with a "users" list`] };
  }
  const extra = Object.keys(json).filter((key) => key !== "users");
  const errors: string[] = extra.map((key) => `top-level field "${key}" is unknown`);
  if (json.users.length > MAX_USERS) {
    return { ok: false, errors: [`more than ${MAX_USERS} users`] };
  }
  const users: UserEntry[] = [];
  const names = new Map<string, number>();
  const tokenIds = new Map<string, number>();
  const addresses = new Map<string, number>();
  json.users.forEach((raw: unknown, i: number) => {
    const label = isObject(raw) && typeof raw.name === "string" && isUserName(raw.name)
      ? `users[${i}] "${raw.name}"`
      : `users[${i}]`;
    if (!isObject(raw)) {
      errors.push(`${label}: must be an object`);
      return;
    }
    const problems: string[] = [];
    const user = readUser(raw, problems);
    for (const problem of problems) errors.push(`${label}: ${problem}`);
    if (user === undefined) return;
    const seen = (map: Map<string, number>, key: string, what: string) => {
      const first = map.get(key);
      if (first !== undefined) errors.push(`${label}: ${what} is users[${first}]'s too`);
      else map.set(key, i);
    };
    seen(names, user.name, `name "${user.name}"`);
    if (user.token) seen(tokenIds, user.token.id, `field "token.id"`);
    for (const field of ["address4", "address6"] as const) {
      const address = user.policy[field];
      if (address) seen(addresses, formatIp(address), `field "${field}" ${formatIp(address)}`);
    }
    users.push(user);
  });
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, users: Object.freeze(users) };
}

/**
 * Checks the users' fixed addresses against the relay's pools: each must be
 * a client address of the pool of its family (not the network address, the
 * relay's own first host or, for IPv4, the broadcast address), and that
 * pool must be on. Returns the problems, named as {@linkcode parseUsersFile}
 * names them.
 */
export function checkUserAddresses(
  users: readonly UserEntry[],
  pools: readonly IpPrefix[],
): string[] {
  const errors: string[] = [];
  users.forEach((user, i) => {
    for (const field of ["address4", "address6"] as const) {
      const address = user.policy[field];
      if (address === undefined) continue;
      const version = field === "address4" ? 4 : 6;
      const pool = pools.find((p) => p.version === version);
      const label = `users[${i}] "${user.name}": field "${field}" ${formatIp(address)}`;
      if (pool === undefined) {
        errors.push(`${label}: the relay has no IPv${version} pool`);
        continue;
      }
      if (!prefixContains(pool, address)) {
        errors.push(`${label} is outside the pool ${formatPrefix(pool)}`);
        continue;
      }
      const bits = version === 4 ? 32 : 128;
      const offset = hostOffset(address, pool.prefixLength);
      const last = (1n << BigInt(bits - pool.prefixLength)) - 1n;
      if (offset <= 1n || (version === 4 && offset === last)) {
        errors.push(
          `${label} is the pool's network, gateway or broadcast address, which no client gets`,
        );
      }
    }
  });
  return errors;
}

function hostOffset(address: Uint8Array, prefixLength: number): bigint {
  let value = 0n;
  for (const byte of address) value = (value << 8n) | BigInt(byte);
  const bits = BigInt(address.length * 8 - prefixLength);
  return value & ((1n << bits) - 1n);
}

/** The users as a users file's JSON text (two-space indent, a newline at the end). */
export function formatUsersFile(users: readonly UserEntry[]): string {
  const out = users.map((user) => {
    const p = user.policy;
    return {
      name: user.name,
      ...(user.token ? { token: { id: user.token.id, hash: user.token.hashText } } : {}),
      ...(user.password ? { password: user.password.hashText } : {}),
      ...(p.routes ? { routes: p.routes.map(formatPrefix) } : {}),
      ...(p.protocols ? { protocols: [...p.protocols] } : {}),
      ...(p.maxSessions !== DEFAULT_USER_MAX_SESSIONS ? { maxSessions: p.maxSessions } : {}),
      ...(p.rateBitsPerSecond !== undefined ? { rate: formatRate(p.rateBitsPerSecond) } : {}),
      ...(p.address4 ? { address4: formatIp(p.address4) } : {}),
      ...(p.address6 ? { address6: formatIp(p.address6) } : {}),
    };
  });
  return `${JSON.stringify({ users: out }, null, 2)}\n`;
}
