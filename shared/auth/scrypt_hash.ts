/**
 * The text form of a stored credential hash: scrypt (RFC 7914) in the PHC
 * string format, `$scrypt$ln=14,r=8,p=1$<salt>$<hash>` (salt and hash in
 * base64 without padding, the format's "B64"). The parameters travel with each hash, so they
 * can be raised later without invalidating stored credentials.
 *
 * Only the format lives here (pure); `relay/password_hash.ts` computes
 * hashes with `node:crypto`.
 *
 * @module
 */

import { decodeB64, encodeB64 } from "./credentials.ts";

/** scrypt's cost parameters (RFC 7914 §2). */
export interface ScryptParams {
  /** log2 of N, the CPU/memory cost: memory is 128 * r * 2^logN bytes. */
  readonly logN: number;
  /** Block size. */
  readonly r: number;
  /** Parallelization. */
  readonly p: number;
}

/** A parsed hash: parameters, salt and derived key. */
export interface ScryptHash extends ScryptParams {
  readonly salt: Uint8Array;
  readonly hash: Uint8Array;
}

/**
 * The default: N = 2^14, r = 8, p = 1 (16 MiB, about 110 ms in Deno 2.9 on
 * the machines this was measured on; docs/decisions.md).
 */
export const DEFAULT_SCRYPT: ScryptParams = Object.freeze({ logN: 14, r: 8, p: 1 });

/** Bytes of salt and of derived key. */
export const SCRYPT_SALT_BYTES = 16;
export const SCRYPT_KEY_BYTES = 32;

/** The bounds a stored hash must keep, so a users file cannot make the relay spend unbounded memory. */
export const SCRYPT_LIMITS = Object.freeze(
  {
    logN: [1, 20],
    r: [1, 32],
    p: [1, 16],
    /** Memory of one hash (128 * r * N), bytes: at most 256 MiB. */
    maxMemory: 256 * 1024 * 1024,
  } as const,
);

/** Memory scrypt needs for `params`, bytes (128 * r * N, RFC 7914 §6). */
export function scryptMemory(params: ScryptParams): number {
  return 128 * params.r * 2 ** params.logN;
}

/** The PHC string of a hash. */
export function formatScryptHash(value: ScryptHash): string {
  return `$scrypt$ln=${value.logN},r=${value.r},p=${value.p}$${encodeB64(value.salt)}$${
    encodeB64(value.hash)
  }`;
}

function integerIn(text: string, min: number, max: number): number | undefined {
  if (text.length === 0 || text.length > 3) return undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return undefined;
  }
  if (text.length > 1 && text[0] === "0") return undefined;
  const value = Number(text);
  return value >= min && value <= max ? value : undefined;
}

/**
 * Reads a PHC scrypt string, or returns what is wrong with it (a message
 * that never quotes the salt or hash).
 */
export function parseScryptHash(text: string): ScryptHash | string {
  const parts = text.split("$");
  if (parts.length !== 5 || parts[0] !== "" || parts[1] !== "scrypt") {
    return "is not a scrypt hash ($scrypt$ln=N,r=N,p=N$salt$hash)";
  }
  const params: Partial<Record<"logN" | "r" | "p", number>> = {};
  for (const item of parts[2].split(",")) {
    const eq = item.indexOf("=");
    const key = item.slice(0, eq);
    const name = key === "ln" ? "logN" : key === "r" || key === "p" ? key : undefined;
    if (eq < 0 || name === undefined || params[name] !== undefined) {
      return "has parameters other than ln, r and p once each";
    }
    const [min, max] = SCRYPT_LIMITS[name];
    const value = integerIn(item.slice(eq + 1), min, max);
    if (value === undefined) return `has ${key} outside ${min}..${max}`;
    params[name] = value;
  }
  if (params.logN === undefined || params.r === undefined || params.p === undefined) {
    return "lacks one of ln, r and p";
  }
  const result = { logN: params.logN, r: params.r, p: params.p };
  if (scryptMemory(result) > SCRYPT_LIMITS.maxMemory) {
    return `needs more than ${SCRYPT_LIMITS.maxMemory / 1024 / 1024} MiB (128 * r * 2^ln)`;
  }
  const salt = decodeB64(parts[3]);
  if (salt === undefined || salt.length < 8 || salt.length > 64) {
    return "has a salt that is not 8..64 bytes of base64";
  }
  const hash = decodeB64(parts[4]);
  if (hash === undefined || hash.length < 16 || hash.length > 64) {
    return "has a hash that is not 16..64 bytes of base64";
  }
  return { ...result, salt, hash };
}
