/**
 * DNS_ASSIGN and PREF64 capsules of "DNS and PREF64 Configuration for
 * Proxying IP in HTTP", draft-ietf-masque-connect-ip-dns-05 (§3, §4), the
 * newest revision whose text this implementation was written from. The
 * capsule types are the draft's provisional values; the draft says they
 * will be replaced by smaller ones before publication.
 *
 * ```
 * DNS_ASSIGN Capsule { Type (i) = 0x1ACE79EC, Length (i), DNS Configuration (..) ... }
 * DNS Configuration { Nameserver Count (i), Nameserver (..) ...,
 *                     Internal Domain Count (i), Internal Domain (..) ...,
 *                     Search Domain Count (i), Search Domain (..) ... }
 * Nameserver { Service Priority (16),
 *              IPv4 Address Count (i), IPv4 Address (32) ...,
 *              IPv6 Address Count (i), IPv6 Address (128) ...,
 *              Authentication Domain Name (..),          a Domain
 *              Service Parameters Length (i), Service Parameters (..) }  SVCB wire format
 * Domain { Domain Length (i), Domain Name (..) }       presentation format, A-labels
 *
 * PREF64 Capsule { Type (i) = 0x274C0FBC, Length (i), NAT64 Prefix (104) ... }
 * NAT64 Prefix { Prefix Length (8), Prefix (96) }      length 32/40/48/56/64/96
 * ```
 *
 * Parsers are pure `parseX(value)` functions over the capsule value (what
 * `CapsuleParser` hands over after type and length; `capsule.ts` turns
 * them into `dns_assign` and `pref64` capsules and back) and throw a
 * {@linkcode CapsuleError} such as `Cannot parse DNS_ASSIGN capsule:
 * nameserver 0 has service priority 0`. A new DNS_ASSIGN or PREF64 capsule
 * replaces the previous one of its type (draft §3.4, §4.2).
 *
 * @module
 */

import { CapsuleError } from "../errors.ts";
import {
  decodeVarint,
  encodeVarintInto,
  varintSize,
  varintSizeFromFirstByte,
} from "../h3/varint.ts";
import { createPrefix, formatIp, hasHostBits, type IpPrefix } from "../ip/ip_address.ts";

/** DNS_ASSIGN capsule type (draft-ietf-masque-connect-ip-dns-05 §6, provisional). */
export const CAPSULE_DNS_ASSIGN = 0x1ace79ec;
/** PREF64 capsule type (draft-ietf-masque-connect-ip-dns-05 §6, provisional). */
export const CAPSULE_PREF64 = 0x274c0fbc;

/** SvcParamKey `alpn` (RFC 9460 §7.1): ALPN ids of the encrypted transports. */
export const SVC_PARAM_ALPN = 1;
/** SvcParamKey `no-default-alpn` (RFC 9460 §7.1): no unencrypted DNS. */
export const SVC_PARAM_NO_DEFAULT_ALPN = 2;
/** SvcParamKey `port` (RFC 9460 §7.2): u16. */
export const SVC_PARAM_PORT = 3;
/** SvcParamKey `ipv4hint` (RFC 9460 §7.3): forbidden here (draft §3.2). */
export const SVC_PARAM_IPV4HINT = 4;
/** SvcParamKey `ipv6hint` (RFC 9460 §7.3): forbidden here (draft §3.2). */
export const SVC_PARAM_IPV6HINT = 6;
/** SvcParamKey `dohpath` (RFC 9461 §5): relative DoH URI template. */
export const SVC_PARAM_DOHPATH = 7;

/** Limit of this implementation: DNS Configurations in one DNS_ASSIGN capsule. */
export const MAX_DNS_CONFIGURATIONS = 16;
/** Limit of this implementation: nameservers in one DNS Configuration. */
export const MAX_NAMESERVERS = 16;
/** Limit of this implementation: addresses of one family in one nameserver. */
export const MAX_NAMESERVER_ADDRESSES = 16;
/** Limit of this implementation: internal or search domains in one DNS Configuration. */
export const MAX_DOMAINS = 64;
/** Limit of this implementation: NAT64 prefixes in one PREF64 capsule. */
export const MAX_NAT64_PREFIXES = 16;
/** Longest domain name in presentation format, bytes (RFC 1035 §2.3.4: 255 octets on the wire). */
export const MAX_DOMAIN_LENGTH = 253;
/** Size of one NAT64 Prefix entry, bytes (draft §4.1). */
export const NAT64_PREFIX_SIZE = 13;
/** NAT64 prefix lengths allowed (RFC 6052 §2.2). */
export const NAT64_PREFIX_LENGTHS: readonly number[] = [32, 40, 48, 56, 64, 96];

/** One SvcParam (RFC 9460 §2.2): key and raw value. */
export interface SvcParam {
  readonly key: number;
  readonly value: Uint8Array;
}

/** One Nameserver structure (draft §3.2). */
export interface DnsNameserver {
  /** SVCB priority 1..65535 (draft §3.2: never 0, ServiceMode); lower is preferred. */
  readonly priority: number;
  /** 4-byte addresses. */
  readonly ipv4: readonly Uint8Array[];
  /** 16-byte addresses. */
  readonly ipv6: readonly Uint8Array[];
  /** Name for TLS authentication; empty for unencrypted DNS only. */
  readonly authDomain: string;
  /** SvcParams in increasing key order. */
  readonly params: readonly SvcParam[];
}

/** One DNS Configuration (draft §3.3). */
export interface DnsConfiguration {
  readonly nameservers: readonly DnsNameserver[];
  /** Domains these nameservers resolve, subdomains included; `""` is the root (every name). */
  readonly internalDomains: readonly string[];
  /** Search domains. */
  readonly searchDomains: readonly string[];
}

const DNS_ASSIGN = "Cannot parse DNS_ASSIGN capsule";
const PREF64 = "Cannot parse PREF64 capsule";

/** Reads fields from a capsule value with bounds checks that throw {@linkcode CapsuleError}. */
class Reader {
  #bytes: Uint8Array;
  #offset = 0;
  #context: string;

  constructor(bytes: Uint8Array, context: string) {
    this.#bytes = bytes;
    this.#context = context;
  }

  get done(): boolean {
    return this.#offset >= this.#bytes.length;
  }

  get left(): number {
    return this.#bytes.length - this.#offset;
  }

  varint(what: string): number {
    if (this.done) throw this.error(`value ends before ${what}`);
    const size = varintSizeFromFirstByte(this.#bytes[this.#offset]);
    if (size > this.left) throw this.error(`value ends inside ${what}`);
    const value = decodeVarint(this.#bytes, this.#offset);
    this.#offset += size;
    return value;
  }

  u16(what: string): number {
    const bytes = this.take(2, what);
    return (bytes[0] << 8) | bytes[1];
  }

  take(length: number, what: string): Uint8Array {
    if (length > this.left) {
      throw this.error(`${what} needs ${length} bytes, ${this.left} left`);
    }
    const out = this.#bytes.slice(this.#offset, this.#offset + length);
    this.#offset += length;
    return out;
  }

  count(what: string, limit: number, minimumEach: number): number {
    const count = this.varint(`${what} count`);
    if (count > limit) throw this.error(`${what} count ${count} exceeds the limit of ${limit}`);
    if (count * minimumEach > this.left) {
      throw this.error(
        `${what} count ${count} needs at least ${count * minimumEach} bytes, ${this.left} left`,
      );
    }
    return count;
  }

  error(message: string): CapsuleError {
    return new CapsuleError(`${this.#context}: ${message}`);
  }
}

/**
 * Why `name` is not a domain name in presentation format made of A-labels
 * (letters, digits, `-`, `_`; labels of 1..63 bytes separated by dots, an
 * optional final dot) of at most {@linkcode MAX_DOMAIN_LENGTH} bytes, as in
 * `has a label longer than 63 bytes`; undefined when it is one. `""` (the
 * root) is one. No regular expression: a loop over the bytes.
 */
export function domainNameProblem(name: string): string | undefined {
  if (name === "" || name === ".") return undefined;
  if (
    name.length > MAX_DOMAIN_LENGTH + 1 || (name.length > MAX_DOMAIN_LENGTH && !name.endsWith("."))
  ) {
    return `is ${name.length} bytes, longer than ${MAX_DOMAIN_LENGTH}`;
  }
  let label = 0;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x2e) {
      if (label === 0) return "has an empty label";
      label = 0;
      continue;
    }
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) ||
      c === 0x2d || c === 0x5f;
    if (!ok) {
      return `has byte 0x${
        c.toString(16).padStart(2, "0")
      } at ${i}: only A-labels (letters, digits, '-', '_') are allowed`;
    }
    if (++label > 63) return "has a label longer than 63 bytes";
  }
  return undefined;
}

/** Throws `fail(...)` with {@linkcode domainNameProblem}'s reason, after `what` and the name. */
function checkDomain(name: string, what: string, fail: (message: string) => Error): void {
  const problem = domainNameProblem(name);
  if (problem === undefined) return;
  // A long name is not repeated in full.
  const shown = name.length > 64 ? `${JSON.stringify(name.slice(0, 32))}...` : JSON.stringify(name);
  throw fail(`${what} ${shown} ${problem}`);
}

function checkParams(
  params: readonly SvcParam[],
  nameserver: { ipv4: readonly Uint8Array[]; ipv6: readonly Uint8Array[]; authDomain: string },
  what: string,
  fail: (message: string) => Error,
): void {
  let previous = -1;
  for (const param of params) {
    if (!Number.isInteger(param.key) || param.key < 0 || param.key > 0xffff) {
      throw fail(`${what} has SvcParamKey ${param.key}, not a u16`);
    }
    if (param.key <= previous) {
      throw fail(
        `${what} has SvcParamKey ${param.key} after ${previous}: keys must increase (RFC 9460 §2.2)`,
      );
    }
    previous = param.key;
    if (param.value.length > 0xffff) throw fail(`${what} has a SvcParam longer than 65535 bytes`);
    if (param.key === SVC_PARAM_IPV4HINT || param.key === SVC_PARAM_IPV6HINT) {
      throw fail(
        `${what} has ${
          param.key === SVC_PARAM_IPV4HINT ? "ipv4hint" : "ipv6hint"
        }, which the draft forbids`,
      );
    }
    if (param.key === SVC_PARAM_PORT && param.value.length !== 2) {
      throw fail(`${what} has a port of ${param.value.length} bytes, not 2`);
    }
    if (param.key === SVC_PARAM_NO_DEFAULT_ALPN && param.value.length !== 0) {
      throw fail(`${what} has a no-default-alpn with a value`);
    }
  }
  const keys = new Set(params.map((p) => p.key));
  if (
    nameserver.authDomain === "" &&
    (keys.has(SVC_PARAM_ALPN) || keys.has(SVC_PARAM_NO_DEFAULT_ALPN))
  ) {
    throw fail(`${what} has alpn or no-default-alpn but no authentication domain name`);
  }
  // Not enforced: "without no-default-alpn the address count MUST be nonzero" (draft §3.2),
  // which the draft's own full-tunnel example (§3.6.1) breaks; such a nameserver simply
  // offers no plain DNS (see plainDnsServers()).
}

function readDomain(reader: Reader, what: string): string {
  const length = reader.varint(`${what} length`);
  if (length > MAX_DOMAIN_LENGTH + 1) {
    throw reader.error(`${what} is ${length} bytes, longer than ${MAX_DOMAIN_LENGTH}`);
  }
  const bytes = reader.take(length, what);
  let name = "";
  for (const byte of bytes) name += String.fromCharCode(byte);
  checkDomain(name, what, (message) => reader.error(message));
  return name;
}

function readNameserver(reader: Reader, what: string): DnsNameserver {
  const priority = reader.u16(`${what} service priority`);
  if (priority === 0) {
    throw reader.error(`${what} has service priority 0 (AliasMode is not allowed)`);
  }
  const ipv4: Uint8Array[] = [];
  for (let i = reader.count(`${what} IPv4 address`, MAX_NAMESERVER_ADDRESSES, 4); i > 0; i--) {
    ipv4.push(reader.take(4, `${what} IPv4 address`));
  }
  const ipv6: Uint8Array[] = [];
  for (let i = reader.count(`${what} IPv6 address`, MAX_NAMESERVER_ADDRESSES, 16); i > 0; i--) {
    ipv6.push(reader.take(16, `${what} IPv6 address`));
  }
  const authDomain = readDomain(reader, `${what} authentication domain name`);
  const paramsLength = reader.varint(`${what} service parameters length`);
  const paramBytes = new Reader(
    reader.take(paramsLength, `${what} service parameters`),
    DNS_ASSIGN,
  );
  const params: SvcParam[] = [];
  while (!paramBytes.done) {
    const key = paramBytes.u16(`${what} SvcParamKey`);
    const length = paramBytes.u16(`${what} SvcParam length`);
    params.push({ key, value: paramBytes.take(length, `${what} SvcParam ${key}`) });
  }
  const nameserver = { priority, ipv4, ipv6, authDomain, params };
  checkParams(params, nameserver, what, (message) => reader.error(message));
  return Object.freeze(nameserver);
}

/**
 * Parses a DNS_ASSIGN capsule's value into its DNS Configurations (zero
 * or more; none clears what an earlier capsule assigned). Throws a
 * {@linkcode CapsuleError} when the value ends inside a structure, a
 * nameserver has priority 0, `ipv4hint`/`ipv6hint`, unordered SvcParam
 * keys or ALPN parameters without an authentication name, a domain is not
 * made of A-labels, or a count exceeds
 * this implementation's limits ({@linkcode MAX_DNS_CONFIGURATIONS} and the
 * others).
 */
export function parseDnsAssign(value: Uint8Array): DnsConfiguration[] {
  const reader = new Reader(value, DNS_ASSIGN);
  const configurations: DnsConfiguration[] = [];
  while (!reader.done) {
    const c = configurations.length;
    if (c >= MAX_DNS_CONFIGURATIONS) {
      throw reader.error(`more than ${MAX_DNS_CONFIGURATIONS} DNS configurations`);
    }
    const nameservers: DnsNameserver[] = [];
    // Each structure takes at least: nameserver 6 bytes, domain 1 byte.
    for (let n = reader.count("nameserver", MAX_NAMESERVERS, 6), i = 0; i < n; i++) {
      nameservers.push(readNameserver(reader, `configuration ${c} nameserver ${i}`));
    }
    const internalDomains: string[] = [];
    for (let n = reader.count("internal domain", MAX_DOMAINS, 1), i = 0; i < n; i++) {
      internalDomains.push(readDomain(reader, `configuration ${c} internal domain ${i}`));
    }
    const searchDomains: string[] = [];
    for (let n = reader.count("search domain", MAX_DOMAINS, 1), i = 0; i < n; i++) {
      searchDomains.push(readDomain(reader, `configuration ${c} search domain ${i}`));
    }
    configurations.push(Object.freeze({ nameservers, internalDomains, searchDomains }));
  }
  return configurations;
}

/** Accumulates encoded fields. */
class Writer {
  #parts: Uint8Array[] = [];
  #length = 0;

  varint(value: number): void {
    const out = new Uint8Array(varintSize(value));
    encodeVarintInto(out, 0, value);
    this.bytes(out);
  }

  u16(value: number): void {
    this.bytes(new Uint8Array([value >> 8, value & 0xff]));
  }

  bytes(bytes: Uint8Array): void {
    this.#parts.push(bytes);
    this.#length += bytes.length;
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.#length);
    let offset = 0;
    for (const part of this.#parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }
}

const ENCODE_DNS = "Cannot encode DNS_ASSIGN capsule";

function writeDomain(writer: Writer, name: string, what: string): void {
  checkDomain(name, what, (message) => new CapsuleError(`${ENCODE_DNS}: ${message}`));
  writer.varint(name.length);
  const bytes = new Uint8Array(name.length);
  for (let i = 0; i < name.length; i++) bytes[i] = name.charCodeAt(i);
  writer.bytes(bytes);
}

function checkLimit(count: number, limit: number, what: string): void {
  if (count > limit) {
    throw new CapsuleError(`${ENCODE_DNS}: ${count} ${what}s exceed the limit of ${limit}`);
  }
}

/**
 * Encodes DNS Configurations as a DNS_ASSIGN capsule value, with the same
 * checks as {@linkcode parseDnsAssign} (a {@linkcode CapsuleError} for
 * anything it would reject).
 */
export function encodeDnsAssign(configurations: readonly DnsConfiguration[]): Uint8Array {
  checkLimit(configurations.length, MAX_DNS_CONFIGURATIONS, "DNS configuration");
  const writer = new Writer();
  configurations.forEach((configuration, c) => {
    checkLimit(configuration.nameservers.length, MAX_NAMESERVERS, "nameserver");
    writer.varint(configuration.nameservers.length);
    configuration.nameservers.forEach((ns, i) => {
      const what = `configuration ${c} nameserver ${i}`;
      const fail = (message: string) => new CapsuleError(`${ENCODE_DNS}: ${message}`);
      if (!Number.isInteger(ns.priority) || ns.priority < 1 || ns.priority > 0xffff) {
        throw fail(`${what} has service priority ${ns.priority}, not 1..65535`);
      }
      checkLimit(ns.ipv4.length, MAX_NAMESERVER_ADDRESSES, `${what} IPv4 address`);
      checkLimit(ns.ipv6.length, MAX_NAMESERVER_ADDRESSES, `${what} IPv6 address`);
      for (const address of ns.ipv4) {
        if (address.length !== 4) {
          throw fail(`${what} has an IPv4 address of ${address.length} bytes`);
        }
      }
      for (const address of ns.ipv6) {
        if (address.length !== 16) {
          throw fail(`${what} has an IPv6 address of ${address.length} bytes`);
        }
      }
      checkParams(ns.params, ns, what, fail);
      writer.u16(ns.priority);
      writer.varint(ns.ipv4.length);
      for (const address of ns.ipv4) writer.bytes(address);
      writer.varint(ns.ipv6.length);
      for (const address of ns.ipv6) writer.bytes(address);
      writeDomain(writer, ns.authDomain, `${what} authentication domain name`);
      const params = new Writer();
      for (const param of ns.params) {
        params.u16(param.key);
        params.u16(param.value.length);
        params.bytes(param.value);
      }
      const paramBytes = params.finish();
      writer.varint(paramBytes.length);
      writer.bytes(paramBytes);
    });
    for (
      const [list, what] of [[configuration.internalDomains, "internal domain"], [
        configuration.searchDomains,
        "search domain",
      ]] as const
    ) {
      checkLimit(list.length, MAX_DOMAINS, what);
      writer.varint(list.length);
      list.forEach((name, i) => writeDomain(writer, name, `configuration ${c} ${what} ${i}`));
    }
  });
  return writer.finish();
}

/**
 * Parses a PREF64 capsule's value into NAT64 prefixes (IPv6, lengths 32,
 * 40, 48, 56, 64 or 96); an empty value withdraws earlier ones (draft
 * §4.2). Throws a {@linkcode CapsuleError} for a length that is not a
 * multiple of 13 bytes, a prefix length not in that list, bits set past
 * the prefix length, or more than {@linkcode MAX_NAT64_PREFIXES} prefixes.
 */
export function parsePref64(value: Uint8Array): IpPrefix[] {
  if (value.length % NAT64_PREFIX_SIZE !== 0) {
    throw new CapsuleError(
      `${PREF64}: length ${value.length} is not a multiple of ${NAT64_PREFIX_SIZE}`,
    );
  }
  const count = value.length / NAT64_PREFIX_SIZE;
  if (count > MAX_NAT64_PREFIXES) {
    throw new CapsuleError(
      `${PREF64}: ${count} prefixes exceed the limit of ${MAX_NAT64_PREFIXES}`,
    );
  }
  const prefixes: IpPrefix[] = [];
  for (let i = 0; i < count; i++) {
    const entry = value.subarray(i * NAT64_PREFIX_SIZE, (i + 1) * NAT64_PREFIX_SIZE);
    const length = entry[0];
    if (!NAT64_PREFIX_LENGTHS.includes(length)) {
      throw new CapsuleError(
        `${PREF64}: prefix ${i} has length ${length}, not 32, 40, 48, 56, 64 or 96`,
      );
    }
    const address = new Uint8Array(16);
    address.set(entry.subarray(1));
    if (hasHostBits(address, length)) {
      throw new CapsuleError(
        `${PREF64}: prefix ${i} ${formatIp(address)} has bits set past length ${length}`,
      );
    }
    prefixes.push(createPrefix(address, length));
  }
  return prefixes;
}

/** Encodes NAT64 prefixes as a PREF64 capsule value, with {@linkcode parsePref64}'s checks. */
export function encodePref64(prefixes: readonly IpPrefix[]): Uint8Array {
  const context = "Cannot encode PREF64 capsule";
  if (prefixes.length > MAX_NAT64_PREFIXES) {
    throw new CapsuleError(
      `${context}: ${prefixes.length} prefixes exceed the limit of ${MAX_NAT64_PREFIXES}`,
    );
  }
  const out = new Uint8Array(prefixes.length * NAT64_PREFIX_SIZE);
  prefixes.forEach((prefix, i) => {
    if (prefix.version !== 6 || !NAT64_PREFIX_LENGTHS.includes(prefix.prefixLength)) {
      throw new CapsuleError(
        `${context}: prefix ${i} must be IPv6 of length 32, 40, 48, 56, 64 or 96, not IPv${prefix.version}/${prefix.prefixLength}`,
      );
    }
    if (hasHostBits(prefix.address, prefix.prefixLength)) {
      throw new CapsuleError(
        `${context}: prefix ${i} has bits set past length ${prefix.prefixLength}`,
      );
    }
    out[i * NAT64_PREFIX_SIZE] = prefix.prefixLength;
    out.set(prefix.address.subarray(0, 12), i * NAT64_PREFIX_SIZE + 1);
  });
  return out;
}

/** The port of a nameserver's `port` SvcParam, or 53 when it has none (plain DNS). */
export function nameserverPort(nameserver: DnsNameserver): number {
  const port = nameserver.params.find((p) => p.key === SVC_PARAM_PORT);
  return port ? (port.value[0] << 8) | port.value[1] : 53;
}

/**
 * The addresses (IPv4 first) of the nameservers that serve unencrypted
 * DNS over port 53, ordered by service priority: what `/etc/resolv.conf`
 * and systemd-resolved's plain `DNS=` can use.
 */
export function plainDnsServers(configurations: readonly DnsConfiguration[]): Uint8Array[] {
  const nameservers = configurations.flatMap((c) => c.nameservers)
    .filter((ns) =>
      !ns.params.some((p) => p.key === SVC_PARAM_NO_DEFAULT_ALPN) && nameserverPort(ns) === 53
    )
    .sort((a, b) => a.priority - b.priority);
  return nameservers.flatMap((ns) => [...ns.ipv4, ...ns.ipv6]);
}

/**
 * The DNS Configuration a relay sends for plain DNS (UDP and TCP port 53)
 * on `servers`, for every name (internal domain `""`, the root) with
 * `searchDomains`: one nameserver of priority 1 holding every address, no
 * authentication name and no SvcParams (draft §3.2, §3.3).
 */
export function plainDnsConfiguration(
  servers: readonly Uint8Array[],
  searchDomains: readonly string[],
): DnsConfiguration {
  return Object.freeze({
    nameservers: Object.freeze([Object.freeze({
      priority: 1,
      ipv4: servers.filter((address) => address.length === 4),
      ipv6: servers.filter((address) => address.length === 16),
      authDomain: "",
      params: [],
    })]),
    internalDomains: Object.freeze([""]),
    searchDomains: Object.freeze([...searchDomains]),
  });
}
