/**
 * Credentials on a CONNECT-IP request (RFC 9484 §10: the proxy decides who
 * may use it; RFC 9110 §11): the `proxy-authorization` or `authorization`
 * field with `Bearer <token>` (RFC 6750 §2.1) or `Basic <base64(user:password)>`
 * (RFC 7617), as sing-box and Xray clients send.
 *
 * A token is `<id>.<secret>`: `id` is 8 base64url characters (48 random
 * bits) that name the token in the users file, so the relay finds the one
 * hash to check without trying every user; `secret` is 43 base64url
 * characters, 256 random bits, of which the relay keeps only a salted hash.
 *
 * Pure: no I/O, no clock. Parsing is one pass over the characters, no
 * regular expression, and bounded by {@linkcode MAX_CREDENTIAL_LENGTH}.
 *
 * @module
 */

import type { HeaderField } from "../h3/qpack.ts";

/** Field names that carry credentials, in the order they are looked at. */
export const CREDENTIAL_FIELDS = ["proxy-authorization", "authorization"] as const;

/** The longest credential field value read, bytes; longer is malformed. */
export const MAX_CREDENTIAL_LENGTH = 1024;

/** Random bytes in a token's id (8 base64url characters). */
export const TOKEN_ID_BYTES = 6;
/** Random bytes in a token's secret (43 base64url characters): 256 bits. */
export const TOKEN_SECRET_BYTES = 32;

/** What a request carries: no credentials, a bearer token, Basic, or something unreadable. */
export type Credentials =
  | { readonly kind: "none" }
  | { readonly kind: "bearer"; readonly id: string; readonly secret: string }
  | { readonly kind: "basic"; readonly user: string; readonly password: string }
  | { readonly kind: "malformed"; readonly reason: string };

const NONE: Credentials = Object.freeze({ kind: "none" });

function malformed(reason: string): Credentials {
  return { kind: "malformed", reason };
}

/**
 * Reads the credentials of a request from its header fields: the first of
 * {@linkcode CREDENTIAL_FIELDS} present (a field given twice is malformed).
 * The scheme is case-insensitive (RFC 9110 §11.1); `Bearer` takes a token
 * of the form `<id>.<secret>`, `Basic` a base64 `user:password` in UTF-8.
 * Other schemes and broken values are `malformed`, with a reason that never
 * quotes the value (it may hold a secret).
 */
export function parseCredentials(headers: readonly HeaderField[]): Credentials {
  for (const field of CREDENTIAL_FIELDS) {
    let value: string | undefined;
    for (const [name, v] of headers) {
      if (name !== field) continue;
      if (value !== undefined) return malformed(`${field} given twice`);
      value = v;
    }
    if (value !== undefined) return parseCredentialValue(value, field);
  }
  return NONE;
}

/** Reads one `authorization`-style value; see {@linkcode parseCredentials}. */
export function parseCredentialValue(value: string, field = "authorization"): Credentials {
  if (value.length > MAX_CREDENTIAL_LENGTH) {
    return malformed(`${field} is longer than ${MAX_CREDENTIAL_LENGTH} bytes`);
  }
  let start = 0;
  let end = value.length;
  while (start < end && isSpace(value.charCodeAt(start))) start++;
  while (end > start && isSpace(value.charCodeAt(end - 1))) end--;
  let space = start;
  while (space < end && !isSpace(value.charCodeAt(space))) space++;
  const scheme = value.slice(start, space).toLowerCase();
  let rest = space;
  while (rest < end && isSpace(value.charCodeAt(rest))) rest++;
  const parameter = value.slice(rest, end);
  if (scheme === "bearer") return parseBearer(parameter, field);
  if (scheme === "basic") return parseBasic(parameter, field);
  return malformed(`${field} has an unsupported scheme (Bearer and Basic are)`);
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

function isBase64Url(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) ||
    c === 0x2d || c === 0x5f;
}

/** Whether `text` is made of base64url characters only (RFC 4648 §5, no padding). */
export function isBase64UrlText(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (!isBase64Url(text.charCodeAt(i))) return false;
  return true;
}

function parseBearer(token: string, field: string): Credentials {
  const parsed = parseToken(token);
  if (parsed === undefined) return malformed(`${field} Bearer value is not a token <id>.<secret>`);
  return { kind: "bearer", ...parsed };
}

/**
 * Splits a token into its id and secret, or `undefined` when it is not
 * `<8 base64url>.<43 base64url>`.
 */
export function parseToken(token: string): { id: string; secret: string } | undefined {
  const idLength = base64UrlLength(TOKEN_ID_BYTES);
  const secretLength = base64UrlLength(TOKEN_SECRET_BYTES);
  if (token.length !== idLength + 1 + secretLength || token.charCodeAt(idLength) !== 0x2e) {
    return undefined;
  }
  for (let i = 0; i < token.length; i++) {
    if (i !== idLength && !isBase64Url(token.charCodeAt(i))) return undefined;
  }
  return { id: token.slice(0, idLength), secret: token.slice(idLength + 1) };
}

function parseBasic(encoded: string, field: string): Credentials {
  const bytes = decodeBase64(encoded);
  if (bytes === undefined) return malformed(`${field} Basic value is not base64`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return malformed(`${field} Basic value is not UTF-8`);
  }
  const colon = text.indexOf(":");
  if (colon <= 0) return malformed(`${field} Basic value has no user name before ':'`);
  return { kind: "basic", user: text.slice(0, colon), password: text.slice(colon + 1) };
}

/** Characters of the base64url form (no padding) of `bytes` bytes. */
export function base64UrlLength(bytes: number): number {
  return Math.ceil((bytes * 4) / 3);
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function encode(bytes: Uint8Array, alphabet: string, pad: boolean): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] +
      alphabet[n & 63];
  }
  const left = bytes.length - i;
  if (left === 1) {
    const n = bytes[i] << 16;
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + (pad ? "==" : "");
  } else if (left === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] +
      (pad ? "=" : "");
  }
  return out;
}

/** Base64 with padding (RFC 4648 §4), as HTTP Basic uses. */
export function encodeBase64(bytes: Uint8Array): string {
  return encode(bytes, ALPHABET, true);
}

/** Base64url without padding (RFC 4648 §5). */
export function encodeBase64Url(bytes: Uint8Array): string {
  return encode(bytes, URL_ALPHABET, false);
}

function sextet(c: number, url: boolean): number {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41;
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26;
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52;
  if (url) return c === 0x2d ? 62 : c === 0x5f ? 63 : -1;
  return c === 0x2b ? 62 : c === 0x2f ? 63 : -1;
}

function decode(text: string, url: boolean, padded: boolean): Uint8Array | undefined {
  let length = text.length;
  if (padded) {
    if (length % 4 !== 0) return undefined;
    if (length > 0 && text.charCodeAt(length - 1) === 0x3d) length--;
    if (length > 0 && text.charCodeAt(length - 1) === 0x3d) length--;
  }
  if (length % 4 === 1) return undefined;
  const out = new Uint8Array(Math.floor((length * 3) / 4));
  let bits = 0;
  let value = 0;
  let o = 0;
  for (let i = 0; i < length; i++) {
    const s = sextet(text.charCodeAt(i), url);
    if (s < 0) return undefined;
    value = (value << 6) | s;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (value >> bits) & 0xff;
    }
  }
  // The bits left over must be zero (RFC 4648 §3.5: a canonical encoding).
  if ((value & ((1 << bits) - 1)) !== 0) return undefined;
  return out;
}

/** Decodes padded base64 (RFC 4648 §4), or `undefined` when it is not canonical base64. */
export function decodeBase64(text: string): Uint8Array | undefined {
  return decode(text, false, true);
}

/** Decodes unpadded base64url (RFC 4648 §5), or `undefined` when it is not. */
export function decodeBase64Url(text: string): Uint8Array | undefined {
  return decode(text, true, false);
}

/** Base64 without padding, the PHC string format's "B64". */
export function encodeB64(bytes: Uint8Array): string {
  return encode(bytes, ALPHABET, false);
}

/** Decodes the PHC string format's "B64" (base64, no padding), or `undefined`. */
export function decodeB64(text: string): Uint8Array | undefined {
  return decode(text, false, false);
}

/** A new token and its parts; `random` fills a buffer (`crypto.getRandomValues`). */
export function generateToken(
  random: (bytes: Uint8Array) => Uint8Array = (b) => crypto.getRandomValues(b),
): { token: string; id: string; secret: string } {
  const id = encodeBase64Url(random(new Uint8Array(TOKEN_ID_BYTES)));
  const secret = encodeBase64Url(random(new Uint8Array(TOKEN_SECRET_BYTES)));
  return { token: `${id}.${secret}`, id, secret };
}

/**
 * Whether `a` and `b` hold the same bytes, in time that depends only on
 * their lengths (not on where they first differ).
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** The `proxy-authorization` field a client sends for a bearer token. */
export function bearerField(token: string): HeaderField {
  return ["proxy-authorization", `Bearer ${token}`];
}

/** The `proxy-authorization` field a client sends for HTTP Basic (RFC 7617 §2, UTF-8). */
export function basicField(user: string, password: string): HeaderField {
  return [
    "proxy-authorization",
    `Basic ${encodeBase64(new TextEncoder().encode(`${user}:${password}`))}`,
  ];
}
