/**
 * A development certificate authority: creates a local CA and server
 * certificates for it, so a client can trust the CA while the real product
 * uses `--cert`/`--key`.
 *
 * Certificates are X.509 v3 (RFC 5280) with ECDSA P-256 keys (RFC 5480) and
 * ecdsa-with-SHA256 signatures (RFC 5758 §3.2), made with WebCrypto and a
 * small DER encoder (ITU-T X.690 §10). {@linkcode parseCertificate} reads
 * back the fields this module writes, so callers can decide whether an
 * existing certificate can be reused. No X.509 dependency: the encoder is
 * about 120 lines, and an npm X.509 stack (pkijs, asn1js, reflect-metadata)
 * would be larger than this whole file.
 *
 * @module
 */

import { errorMessage } from "./errors.ts";
import { formatIp, ipVersionOf, parseIp } from "./ip/ip_address.ts";

/** A certificate and its private key, both PEM (RFC 7468); the key is PKCS#8 (RFC 5208). */
export interface PemCertificate {
  /** The certificate, `-----BEGIN CERTIFICATE-----` (RFC 7468 §5). */
  readonly certPem: string;
  /** The private key, `-----BEGIN PRIVATE KEY-----` (RFC 7468 §10). */
  readonly keyPem: string;
}

/** A development CA: its certificate, its key, and the key pair that signs with it. */
export interface DevCa extends PemCertificate {
  /** Opaque handle used by {@linkcode issueServerCert} to sign. */
  readonly signer: CryptoKeyPair;
}

/** Options for {@linkcode createDevCa}. */
export interface DevCaOptions {
  /**
   * Subject common name; default {@linkcode DEFAULT_CA_COMMON_NAME} and 8
   * random hex digits. Distinct names matter: TLS clients find an issuer by
   * name (RFC 5280 §6.1), so two CAs with one name turn "unknown issuer" into
   * "bad signature".
   */
  readonly commonName?: string;
  /** Days of validity from `now`; default {@linkcode DEFAULT_CA_VALID_DAYS}. */
  readonly validDays?: number;
  /** The current time; default `new Date()`. */
  readonly now?: Date;
}

/** Options for {@linkcode issueServerCert}. */
export interface ServerCertOptions {
  /** DNS names for the subjectAltName (RFC 5280 §4.2.1.6), e.g. `localhost`. */
  readonly dnsNames: readonly string[];
  /** IPv4 or IPv6 addresses in text form for the subjectAltName. */
  readonly ipAddresses: readonly string[];
  /** Days of validity from `now`, cut at the CA's notAfter; default {@linkcode DEFAULT_SERVER_VALID_DAYS}. */
  readonly validDays?: number;
  /** The current time; default `new Date()`. */
  readonly now?: Date;
}

/** The fields of a certificate that this module writes (RFC 5280 §4.1). */
export interface CertificateInfo {
  /** The DER TBSCertificate, the bytes the signature covers. */
  readonly tbsCertificate: Uint8Array;
  /** 1, 2 or 3. */
  readonly version: number;
  /** The serial number's INTEGER content bytes. */
  readonly serialNumber: Uint8Array;
  /** The DER issuer Name. */
  readonly issuer: Uint8Array;
  /** The DER subject Name. */
  readonly subject: Uint8Array;
  /** The subject's first common name, if any. */
  readonly commonName: string | undefined;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The DER SubjectPublicKeyInfo. */
  readonly subjectPublicKeyInfo: Uint8Array;
  /** basicConstraints cA (RFC 5280 §4.2.1.9); false when the extension is absent. */
  readonly isCa: boolean;
  /** subjectAltName dNSName entries, in order. */
  readonly dnsNames: readonly string[];
  /** subjectAltName iPAddress entries, formatted by `formatIp` (RFC 5952). */
  readonly ipAddresses: readonly string[];
  /** RFC 5280 §4.2.1.2, if present. */
  readonly subjectKeyIdentifier: Uint8Array | undefined;
  /** The keyIdentifier of RFC 5280 §4.2.1.1, if present. */
  readonly authorityKeyIdentifier: Uint8Array | undefined;
  /** The outer signatureAlgorithm OID, dotted. */
  readonly signatureAlgorithm: string;
  /** The signature BIT STRING content (DER Ecdsa-Sig-Value for ECDSA). */
  readonly signature: Uint8Array;
}

/** A malformed certificate, key or PEM, or a certificate that cannot be issued. */
export class CertificateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CertificateError";
  }
}

/** Default subject common name prefix of a development CA. */
export const DEFAULT_CA_COMMON_NAME = "MASQUE VPN development CA";
/** Default CA lifetime in days. */
export const DEFAULT_CA_VALID_DAYS = 3650;
/** Default server certificate lifetime in days (the CA/Browser Forum's old 825-day cap). */
export const DEFAULT_SERVER_VALID_DAYS = 825;
/** notBefore is set this many milliseconds before `now`, to tolerate clock skew. */
export const NOT_BEFORE_BACKDATE_MS = 60 * 60 * 1000;

const MS_PER_DAY = 24 * 60 * 60 * 1000;
const MAX_VALID_DAYS = 36500;
/** RFC 5280 §4.1.2.2: serial numbers are positive and at most 20 octets; we use 16 random ones. */
const SERIAL_NUMBER_BYTES = 16;
/** P-256 scalars are 32 bytes, so a WebCrypto signature is r || s of 64 (RFC 6090, WebCrypto §23). */
const P256_SCALAR_BYTES = 32;

// X.690 §8 universal tags and the context tags RFC 5280 uses.
const TAG_BOOLEAN = 0x01;
const TAG_INTEGER = 0x02;
const TAG_BIT_STRING = 0x03;
const TAG_OCTET_STRING = 0x04;
const TAG_OID = 0x06;
const TAG_UTF8_STRING = 0x0c;
const TAG_PRINTABLE_STRING = 0x13;
const TAG_IA5_STRING = 0x16;
const TAG_UTC_TIME = 0x17;
const TAG_GENERALIZED_TIME = 0x18;
const TAG_SEQUENCE = 0x30;
const TAG_SET = 0x31;
/** TBSCertificate `[0] EXPLICIT Version`, `[1]`/`[2]` unique IDs, `[3] EXPLICIT Extensions`. */
const TAG_VERSION = 0xa0;
const TAG_ISSUER_UNIQUE_ID = 0x81;
const TAG_SUBJECT_UNIQUE_ID = 0x82;
const TAG_EXTENSIONS = 0xa3;
/** GeneralName `[2] IA5String` and `[7] OCTET STRING` (RFC 5280 §4.2.1.6). */
const TAG_GENERAL_NAME_DNS = 0x82;
const TAG_GENERAL_NAME_IP = 0x87;
/** AuthorityKeyIdentifier `keyIdentifier [0]` (RFC 5280 §4.2.1.1). */
const TAG_KEY_IDENTIFIER = 0x80;

const VERSION_V3 = 2;
const OID_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";
const OID_COMMON_NAME = "2.5.4.3";
const OID_SUBJECT_KEY_IDENTIFIER = "2.5.29.14";
const OID_KEY_USAGE = "2.5.29.15";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
const OID_BASIC_CONSTRAINTS = "2.5.29.19";
const OID_AUTHORITY_KEY_IDENTIFIER = "2.5.29.35";
const OID_EXT_KEY_USAGE = "2.5.29.37";
const OID_KP_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
/** KeyUsage bit numbers (RFC 5280 §4.2.1.3). */
const KEY_USAGE_DIGITAL_SIGNATURE = 0;
const KEY_USAGE_KEY_CERT_SIGN = 5;
const KEY_USAGE_CRL_SIGN = 6;

const ECDSA_P256: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const ECDSA_SHA256: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };

/** Creates a self-signed CA certificate (basicConstraints cA, keyUsage keyCertSign|cRLSign, SKI, AKI). */
export async function createDevCa(options: DevCaOptions = {}): Promise<DevCa> {
  const now = options.now ?? new Date();
  const validDays = checkValidDays(options.validDays ?? DEFAULT_CA_VALID_DAYS);
  const signer = await crypto.subtle.generateKey(ECDSA_P256, true, ["sign", "verify"]);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", signer.publicKey));
  const keyId = await keyIdentifier(spki);
  const suffix = Array.from(crypto.getRandomValues(new Uint8Array(4)), hex2).join("");
  const name = encodeName(options.commonName ?? `${DEFAULT_CA_COMMON_NAME} ${suffix}`);
  const certDer = await signCertificate(signer.privateKey, {
    issuer: name,
    subject: name,
    notBefore: new Date(now.getTime() - NOT_BEFORE_BACKDATE_MS),
    notAfter: new Date(now.getTime() + validDays * MS_PER_DAY),
    spki,
    extensions: [
      extension(OID_BASIC_CONSTRAINTS, true, seq(derBoolean(true))),
      extension(OID_KEY_USAGE, true, keyUsage(KEY_USAGE_KEY_CERT_SIGN, KEY_USAGE_CRL_SIGN)),
      extension(OID_SUBJECT_KEY_IDENTIFIER, false, der(TAG_OCTET_STRING, keyId)),
      extension(OID_AUTHORITY_KEY_IDENTIFIER, false, seq(der(TAG_KEY_IDENTIFIER, keyId))),
    ],
  });
  return {
    certPem: encodePem("CERTIFICATE", certDer),
    keyPem: await exportKeyPem(signer.privateKey),
    signer,
  };
}

/**
 * Issues a server certificate signed by `ca`: subjectAltName with the given
 * DNS names and IP addresses, extKeyUsage serverAuth, basicConstraints cA
 * false, keyUsage digitalSignature (RFC 5280 §4.2.1). The subject common name
 * is the first DNS name, else the first address. Throws
 * {@linkcode CertificateError} for bad names or a signer that does not match
 * the CA certificate.
 */
export async function issueServerCert(
  ca: DevCa,
  options: ServerCertOptions,
): Promise<PemCertificate> {
  const now = options.now ?? new Date();
  const validDays = checkValidDays(options.validDays ?? DEFAULT_SERVER_VALID_DAYS);
  const caInfo = parseCertificate(decodePem(ca.certPem, "CERTIFICATE"));
  if (!caInfo.isCa) {
    throw new CertificateError("Cannot issue certificate: the CA certificate is not a CA");
  }
  const caSpki = new Uint8Array(await crypto.subtle.exportKey("spki", ca.signer.publicKey));
  if (!bytesEqual(caSpki, caInfo.subjectPublicKeyInfo)) {
    throw new CertificateError(
      "Cannot issue certificate: the signer's public key does not match the CA certificate",
    );
  }
  const names = [
    ...options.dnsNames.map((name) => der(TAG_GENERAL_NAME_DNS, ascii(checkDnsName(name)))),
    ...options.ipAddresses.map((address) => der(TAG_GENERAL_NAME_IP, sanAddress(address))),
  ];
  const commonName = options.dnsNames[0] ?? options.ipAddresses[0];
  if (commonName === undefined) {
    throw new CertificateError("Cannot issue certificate: no DNS names or IP addresses given");
  }
  const keys = await crypto.subtle.generateKey(ECDSA_P256, true, ["sign", "verify"]);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const notAfter = Math.min(now.getTime() + validDays * MS_PER_DAY, caInfo.notAfter.getTime());
  const caKeyId = caInfo.subjectKeyIdentifier ?? await keyIdentifier(caInfo.subjectPublicKeyInfo);
  const certDer = await signCertificate(ca.signer.privateKey, {
    issuer: caInfo.subject,
    subject: encodeName(commonName),
    notBefore: new Date(now.getTime() - NOT_BEFORE_BACKDATE_MS),
    notAfter: new Date(notAfter),
    spki,
    extensions: [
      extension(OID_BASIC_CONSTRAINTS, true, seq()),
      extension(OID_KEY_USAGE, true, keyUsage(KEY_USAGE_DIGITAL_SIGNATURE)),
      extension(OID_EXT_KEY_USAGE, false, seq(derOid(OID_KP_SERVER_AUTH))),
      extension(OID_SUBJECT_ALT_NAME, false, seq(...names)),
      extension(
        OID_SUBJECT_KEY_IDENTIFIER,
        false,
        der(TAG_OCTET_STRING, await keyIdentifier(spki)),
      ),
      extension(OID_AUTHORITY_KEY_IDENTIFIER, false, seq(der(TAG_KEY_IDENTIFIER, caKeyId))),
    ],
  });
  return {
    certPem: encodePem("CERTIFICATE", certDer),
    keyPem: await exportKeyPem(keys.privateKey),
  };
}

/**
 * Rebuilds a {@linkcode DevCa} from its PEM certificate and PKCS#8 key, e.g.
 * read back from disk. Throws {@linkcode CertificateError} when the
 * certificate is not a CA or the key does not belong to it.
 */
export async function importDevCa(certPem: string, keyPem: string): Promise<DevCa> {
  const info = parseCertificate(decodePem(certPem, "CERTIFICATE"));
  if (!info.isCa) throw new CertificateError("Cannot import CA: the certificate is not a CA");
  const signer = await importKeyPair(info.subjectPublicKeyInfo, keyPem);
  if (!await keyPairMatches(signer)) {
    throw new CertificateError("Cannot import CA: the private key does not match the certificate");
  }
  return { certPem, keyPem, signer };
}

/** Whether the PKCS#8 P-256 `keyPem` is the private key of the certificate `certPem`. */
export async function certificateMatchesKey(certPem: string, keyPem: string): Promise<boolean> {
  const info = parseCertificate(decodePem(certPem, "CERTIFICATE"));
  return await keyPairMatches(await importKeyPair(info.subjectPublicKeyInfo, keyPem));
}

async function importKeyPair(spki: Uint8Array, keyPem: string): Promise<CryptoKeyPair> {
  const pkcs8 = decodePem(keyPem, "PRIVATE KEY");
  try {
    return {
      publicKey: await crypto.subtle.importKey("spki", spki.slice(), ECDSA_P256, true, ["verify"]),
      privateKey: await crypto.subtle.importKey("pkcs8", pkcs8, ECDSA_P256, false, ["sign"]),
    };
  } catch (error) {
    const reason = errorMessage(error);
    throw new CertificateError(`Cannot import key: not an ECDSA P-256 key (${reason})`);
  }
}

async function keyPairMatches(pair: CryptoKeyPair): Promise<boolean> {
  const challenge = crypto.getRandomValues(new Uint8Array(32));
  const signature = await crypto.subtle.sign(ECDSA_SHA256, pair.privateKey, challenge);
  return await crypto.subtle.verify(ECDSA_SHA256, pair.publicKey, signature, challenge);
}

function checkValidDays(days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > MAX_VALID_DAYS) {
    throw new CertificateError(
      `Cannot issue certificate: validDays ${days} is not an integer from 1 to ${MAX_VALID_DAYS}`,
    );
  }
  return days;
}

const DNS_LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const DNS_NAME = new RegExp(`^(?:\\*\\.)?${DNS_LABEL}(?:\\.${DNS_LABEL})*$`, "i");
const MAX_DNS_NAME_LENGTH = 253;

function checkDnsName(name: string): string {
  if (name.length > MAX_DNS_NAME_LENGTH || !DNS_NAME.test(name)) {
    throw new CertificateError(
      `Cannot issue certificate: ${JSON.stringify(name)} is not a valid DNS name`,
    );
  }
  return name;
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING content. */
async function keyIdentifier(spki: Uint8Array): Promise<Uint8Array> {
  const outer = new DerReader(spki, "SubjectPublicKeyInfo");
  const inner = outer.enter(TAG_SEQUENCE, "SubjectPublicKeyInfo");
  inner.read(TAG_SEQUENCE, "algorithm");
  const key = bitStringContent(inner, inner.read(TAG_BIT_STRING, "subjectPublicKey"));
  return new Uint8Array(await crypto.subtle.digest("SHA-1", key.slice()));
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  return encodePem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)));
}

interface TbsFields {
  readonly issuer: Uint8Array;
  readonly subject: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: Uint8Array;
  readonly extensions: readonly Uint8Array[];
}

/** RFC 5280 §4.1: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }. */
async function signCertificate(key: CryptoKey, fields: TbsFields): Promise<Uint8Array> {
  const serial = crypto.getRandomValues(new Uint8Array(SERIAL_NUMBER_BYTES));
  serial[0] = (serial[0] & 0x7f) | 0x40; // positive, and no leading zero to strip
  const algorithm = seq(derOid(OID_ECDSA_WITH_SHA256)); // parameters absent (RFC 5758 §3.2)
  const tbs = seq(
    der(TAG_VERSION, derInteger(Uint8Array.of(VERSION_V3))),
    derInteger(serial),
    algorithm,
    fields.issuer,
    seq(derTime(fields.notBefore), derTime(fields.notAfter)),
    fields.subject,
    fields.spki,
    der(TAG_EXTENSIONS, seq(...fields.extensions)),
  );
  const raw = new Uint8Array(await crypto.subtle.sign(ECDSA_SHA256, key, tbs));
  return seq(tbs, algorithm, derBitString(ecdsaSignatureToDer(raw)));
}

/** WebCrypto's r || s to `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279 §2.2.3). */
function ecdsaSignatureToDer(raw: Uint8Array): Uint8Array {
  if (raw.length !== 2 * P256_SCALAR_BYTES) {
    throw new CertificateError(`Cannot sign certificate: signature length ${raw.length} is not 64`);
  }
  return seq(
    derInteger(raw.subarray(0, P256_SCALAR_BYTES)),
    derInteger(raw.subarray(P256_SCALAR_BYTES)),
  );
}

// ---- DER encoding (X.690 §10: definite lengths, minimal encodings) ----

function der(tag: number, ...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let length = 0;
  for (const part of parts) length += part.length;
  const lengthBytes: number[] = [];
  if (length > 0x7f) {
    for (let n = length; n > 0; n = Math.floor(n / 256)) lengthBytes.unshift(n & 0xff);
  }
  const header = length > 0x7f ? [tag, 0x80 | lengthBytes.length, ...lengthBytes] : [tag, length];
  const out = new Uint8Array(header.length + length);
  out.set(header);
  let offset = header.length;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function seq(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return der(TAG_SEQUENCE, ...parts);
}

function derBoolean(value: boolean): Uint8Array {
  return der(TAG_BOOLEAN, Uint8Array.of(value ? 0xff : 0x00));
}

/** An unsigned big-endian magnitude as a minimal, non-negative INTEGER. */
function derInteger(magnitude: Uint8Array): Uint8Array {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  return trimmed.length > 0 && trimmed[0] & 0x80
    ? der(TAG_INTEGER, Uint8Array.of(0), trimmed)
    : der(TAG_INTEGER, trimmed.length > 0 ? trimmed : Uint8Array.of(0));
}

function derBitString(bytes: Uint8Array, unusedBits = 0): Uint8Array {
  return der(TAG_BIT_STRING, Uint8Array.of(unusedBits), bytes);
}

function derOid(dotted: string): Uint8Array {
  const arcs = dotted.split(".").map(Number);
  const out: number[] = [];
  for (const arc of [arcs[0] * 40 + arcs[1], ...arcs.slice(2)]) {
    const base128 = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) {
      base128.unshift(0x80 | (n & 0x7f));
    }
    out.push(...base128);
  }
  return der(TAG_OID, Uint8Array.from(out));
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, always seconds and Z. */
function derTime(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  const pad = (n: number) => String(n).padStart(2, "0");
  const rest = pad(date.getUTCMonth() + 1) + pad(date.getUTCDate()) + pad(date.getUTCHours()) +
    pad(date.getUTCMinutes()) + pad(date.getUTCSeconds()) + "Z";
  return year >= 1950 && year < 2050
    ? der(TAG_UTC_TIME, ascii(pad(year % 100) + rest))
    : der(TAG_GENERALIZED_TIME, ascii(String(year).padStart(4, "0") + rest));
}

/** Name ::= SEQUENCE OF SET OF AttributeTypeAndValue, with one commonName (RFC 5280 §4.1.2.4). */
function encodeName(commonName: string): Uint8Array {
  return seq(der(
    TAG_SET,
    seq(derOid(OID_COMMON_NAME), der(TAG_UTF8_STRING, new TextEncoder().encode(commonName))),
  ));
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }. */
function extension(oid: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical
    ? seq(derOid(oid), derBoolean(true), der(TAG_OCTET_STRING, value))
    : seq(derOid(oid), der(TAG_OCTET_STRING, value));
}

/** KeyUsage BIT STRING with trailing zero bits removed (X.690 §11.2.2). */
function keyUsage(...bits: number[]): Uint8Array {
  const highest = Math.max(...bits);
  const bytes = new Uint8Array(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[bit >> 3] |= 0x80 >> (bit & 7);
  return derBitString(bytes, 7 - (highest & 7));
}

function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

// ---- PEM (RFC 7468) ----

const PEM_LINE_LENGTH = 64;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Encodes `der` as a PEM block with 64-character lines and a trailing newline (RFC 7468 §2). */
export function encodePem(label: string, der: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < der.length; i += 0x8000) {
    binary += String.fromCharCode(...der.subarray(i, i + 0x8000));
  }
  const lines = btoa(binary).match(new RegExp(`.{1,${PEM_LINE_LENGTH}}`, "g")) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}${
    lines.length > 0 ? "\n" : ""
  }-----END ${label}-----\n`;
}

/**
 * Decodes the first PEM block labelled `label` (RFC 7468 §2; text around
 * blocks is ignored, whitespace inside is allowed). Throws
 * {@linkcode CertificateError} when there is none or its base64 is invalid.
 */
export function decodePem(pem: string, label: string): Uint8Array<ArrayBuffer> {
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  const start = pem.indexOf(begin);
  if (start < 0) throw new CertificateError(`Cannot parse PEM: no ${label} block`);
  const stop = pem.indexOf(end, start + begin.length);
  if (stop < 0) throw new CertificateError(`Cannot parse PEM: ${label} block has no END line`);
  const body = pem.slice(start + begin.length, stop).replace(/\s+/g, "");
  if (body.length % 4 !== 0 || !BASE64.test(body)) {
    throw new CertificateError(`Cannot parse PEM: ${label} block is not valid base64`);
  }
  let binary: string;
  try {
    binary = atob(body);
  } catch {
    throw new CertificateError(`Cannot parse PEM: ${label} block is not valid base64`);
  }
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

// ---- IP addresses ----

/** An iPAddress GeneralName's bytes (RFC 5280 §4.2.1.6) from text; throws {@linkcode CertificateError}. */
function sanAddress(text: string): Uint8Array {
  const address = parseIp(text);
  if (address === undefined) {
    throw new CertificateError(`Cannot parse IP address: ${JSON.stringify(text)}`);
  }
  return address;
}

// ---- DER decoding ----

/**
 * Parses a DER X.509 certificate (RFC 5280 §4.1) into the fields this module
 * uses. It checks DER framing, times and the extensions it reads; it does not
 * verify the signature. Byte fields are views into `der` (not copies). Throws
 * {@linkcode CertificateError} with messages like
 * `Cannot parse certificate: length 300 of TBSCertificate exceeds the 120 remaining bytes`.
 */
export function parseCertificate(der: Uint8Array): CertificateInfo {
  const top = new DerReader(der, "certificate");
  const certificate = top.enter(TAG_SEQUENCE, "Certificate");
  top.finish("Certificate");
  const tbsCertificate = certificate.peekWhole(TAG_SEQUENCE, "TBSCertificate");
  const tbs = certificate.enter(TAG_SEQUENCE, "TBSCertificate");
  const signatureAlgorithm = parseAlgorithm(certificate.enter(TAG_SEQUENCE, "signatureAlgorithm"));
  const signature = bitStringContent(
    certificate,
    certificate.read(TAG_BIT_STRING, "signatureValue"),
  );
  certificate.finish("Certificate");

  let version = 1;
  if (tbs.peekTag() === TAG_VERSION) {
    const explicit = tbs.enter(TAG_VERSION, "version");
    const value = explicit.read(TAG_INTEGER, "version");
    explicit.finish("version");
    if (value.length !== 1 || value[0] > VERSION_V3) {
      throw tbs.error(`version ${formatHex(value)} is not v1, v2 or v3`);
    }
    version = value[0] + 1;
  }
  const serialNumber = tbs.read(TAG_INTEGER, "serialNumber");
  if (serialNumber.length === 0) throw tbs.error("serialNumber is empty");
  parseAlgorithm(tbs.enter(TAG_SEQUENCE, "signature"));
  const issuer = tbs.peekWhole(TAG_SEQUENCE, "issuer");
  tbs.read(TAG_SEQUENCE, "issuer");
  const validity = tbs.enter(TAG_SEQUENCE, "validity");
  const notBefore = parseTime(validity, "notBefore");
  const notAfter = parseTime(validity, "notAfter");
  validity.finish("validity");
  const subject = tbs.peekWhole(TAG_SEQUENCE, "subject");
  const commonName = parseCommonName(tbs.enter(TAG_SEQUENCE, "subject"));
  const subjectPublicKeyInfo = tbs.peekWhole(TAG_SEQUENCE, "subjectPublicKeyInfo");
  tbs.read(TAG_SEQUENCE, "subjectPublicKeyInfo");
  if (tbs.peekTag() === TAG_ISSUER_UNIQUE_ID) tbs.read(TAG_ISSUER_UNIQUE_ID, "issuerUniqueID");
  if (tbs.peekTag() === TAG_SUBJECT_UNIQUE_ID) tbs.read(TAG_SUBJECT_UNIQUE_ID, "subjectUniqueID");
  const extensions = new Map<string, DerReader>();
  if (tbs.peekTag() === TAG_EXTENSIONS) {
    const explicit = tbs.enter(TAG_EXTENSIONS, "extensions");
    const list = explicit.enter(TAG_SEQUENCE, "extensions");
    explicit.finish("extensions");
    while (!list.done()) {
      const ext = list.enter(TAG_SEQUENCE, "extension");
      const oid = decodeOid(ext, ext.read(TAG_OID, "extnID"));
      if (ext.peekTag() === TAG_BOOLEAN) parseBoolean(ext, "critical");
      const value = ext.enter(TAG_OCTET_STRING, "extnValue");
      ext.finish("extension");
      if (extensions.has(oid)) throw list.error(`extension ${oid} appears twice`);
      extensions.set(oid, value);
    }
  }
  tbs.finish("TBSCertificate");

  let isCa = false;
  const basic = extensions.get(OID_BASIC_CONSTRAINTS);
  if (basic !== undefined) {
    const constraints = basic.enter(TAG_SEQUENCE, "basicConstraints");
    basic.finish("basicConstraints");
    if (constraints.peekTag() === TAG_BOOLEAN) isCa = parseBoolean(constraints, "cA");
    if (constraints.peekTag() === TAG_INTEGER) constraints.read(TAG_INTEGER, "pathLenConstraint");
    constraints.finish("basicConstraints");
  }
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  const san = extensions.get(OID_SUBJECT_ALT_NAME);
  if (san !== undefined) {
    const names = san.enter(TAG_SEQUENCE, "subjectAltName");
    san.finish("subjectAltName");
    while (!names.done()) {
      const tag = names.peekTag();
      const value = names.readAny("GeneralName");
      if (tag === TAG_GENERAL_NAME_DNS) dnsNames.push(decodeString(names, TAG_IA5_STRING, value));
      if (tag === TAG_GENERAL_NAME_IP) {
        if (ipVersionOf(value) === undefined) {
          throw names.error(`iPAddress length ${value.length} is not 4 or 16`);
        }
        ipAddresses.push(formatIp(value));
      }
    }
  }
  let subjectKeyIdentifier: Uint8Array | undefined;
  const ski = extensions.get(OID_SUBJECT_KEY_IDENTIFIER);
  if (ski !== undefined) {
    subjectKeyIdentifier = ski.read(TAG_OCTET_STRING, "subjectKeyIdentifier");
    ski.finish("subjectKeyIdentifier");
  }
  let authorityKeyIdentifier: Uint8Array | undefined;
  const aki = extensions.get(OID_AUTHORITY_KEY_IDENTIFIER);
  if (aki !== undefined) {
    const fields = aki.enter(TAG_SEQUENCE, "authorityKeyIdentifier");
    aki.finish("authorityKeyIdentifier");
    if (fields.peekTag() === TAG_KEY_IDENTIFIER) {
      authorityKeyIdentifier = fields.read(TAG_KEY_IDENTIFIER, "keyIdentifier");
    }
  }
  return {
    tbsCertificate,
    version,
    serialNumber,
    issuer,
    subject,
    commonName,
    notBefore,
    notAfter,
    subjectPublicKeyInfo,
    isCa,
    dnsNames,
    ipAddresses,
    subjectKeyIdentifier,
    authorityKeyIdentifier,
    signatureAlgorithm,
    signature,
  };
}

/** Reads TLVs from `bytes[start, end)`; errors name the absolute offset. */
class DerReader {
  readonly #bytes: Uint8Array;
  readonly #what: string;
  readonly #end: number;
  #offset: number;

  constructor(bytes: Uint8Array, what: string, start = 0, end = bytes.length) {
    this.#bytes = bytes;
    this.#what = what;
    this.#offset = start;
    this.#end = end;
  }

  error(reason: string): CertificateError {
    return new CertificateError(`Cannot parse ${this.#what}: ${reason}`);
  }

  done(): boolean {
    return this.#offset >= this.#end;
  }

  peekTag(): number | undefined {
    return this.done() ? undefined : this.#bytes[this.#offset];
  }

  /** The next element's full TLV bytes, which must have `tag`, without consuming it. */
  peekWhole(tag: number, field: string): Uint8Array {
    const { end } = this.#expect(tag, field);
    return this.#bytes.subarray(this.#offset, end);
  }

  /** Consumes an element with `tag` and returns its content. */
  read(tag: number, field: string): Uint8Array {
    const { start, end } = this.#expect(tag, field);
    this.#offset = end;
    return this.#bytes.subarray(start, end);
  }

  /** Consumes any element and returns its content. */
  readAny(field: string): Uint8Array {
    const { start, end } = this.#header(field);
    this.#offset = end;
    return this.#bytes.subarray(start, end);
  }

  /** Consumes a constructed element with `tag` and returns a reader over its content. */
  enter(tag: number, field: string): DerReader {
    const { start, end } = this.#expect(tag, field);
    this.#offset = end;
    return new DerReader(this.#bytes, this.#what, start, end);
  }

  finish(field: string): void {
    if (!this.done()) {
      const left = this.#end - this.#offset;
      throw this.error(`${left} unexpected byte${left === 1 ? "" : "s"} at the end of ${field}`);
    }
  }

  #expect(tag: number, field: string): { start: number; end: number } {
    const actual = this.peekTag();
    if (actual !== tag) {
      throw this.error(
        actual === undefined
          ? `${field} is missing at offset ${this.#offset}`
          : `expected tag 0x${hex2(tag)} for ${field} at offset ${this.#offset}, got 0x${
            hex2(actual)
          }`,
      );
    }
    return this.#header(field);
  }

  #header(field: string): { start: number; end: number } {
    const at = this.#offset;
    if (at + 2 > this.#end) throw this.error(`${field} is truncated at offset ${at}`);
    if ((this.#bytes[at] & 0x1f) === 0x1f) {
      throw this.error(`high tag number form at offset ${at} is not supported`);
    }
    const first = this.#bytes[at + 1];
    let length = first;
    let start = at + 2;
    if (first & 0x80) {
      const count = first & 0x7f;
      if (count === 0) throw this.error(`indefinite length at offset ${at + 1} is not DER`);
      if (count > 4) throw this.error(`length of ${count} bytes at offset ${at + 1} is too long`);
      if (start + count > this.#end) throw this.error(`${field} is truncated at offset ${at}`);
      length = 0;
      for (let i = 0; i < count; i++) length = length * 256 + this.#bytes[start + i];
      if (length < 0x80 || this.#bytes[start] === 0) {
        throw this.error(`length at offset ${at + 1} is not minimally encoded`);
      }
      start += count;
    }
    const remaining = this.#end - start;
    if (length > remaining) {
      throw this.error(`length ${length} of ${field} exceeds the ${remaining} remaining bytes`);
    }
    return { start, end: start + length };
  }
}

function hex2(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

/** One character per byte, without spreading a large array into arguments. */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

function formatHex(bytes: Uint8Array): string {
  return "0x" + Array.from(bytes, hex2).join("");
}

function parseAlgorithm(reader: DerReader): string {
  const oid = decodeOid(reader, reader.read(TAG_OID, "algorithm"));
  if (!reader.done()) reader.readAny("parameters");
  reader.finish("AlgorithmIdentifier");
  return oid;
}

function parseBoolean(reader: DerReader, field: string): boolean {
  const value = reader.read(TAG_BOOLEAN, field);
  if (value.length !== 1 || (value[0] !== 0x00 && value[0] !== 0xff)) {
    throw reader.error(`${field} is not a DER BOOLEAN`);
  }
  return value[0] === 0xff;
}

function bitStringContent(reader: DerReader, content: Uint8Array): Uint8Array {
  if (content.length === 0 || content[0] !== 0) {
    throw reader.error("BIT STRING is empty or not whole bytes");
  }
  return content.subarray(1);
}

function decodeOid(reader: DerReader, content: Uint8Array): string {
  const arcs: number[] = [];
  let value = 0;
  for (const [i, byte] of content.entries()) {
    if (value === 0 && byte === 0x80) throw reader.error("OID arc has a leading 0x80 byte");
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw reader.error("OID arc is too large");
    if (!(byte & 0x80)) {
      if (arcs.length > 0) arcs.push(value);
      else arcs.push(...(value < 80 ? [Math.floor(value / 40), value % 40] : [2, value - 80]));
      value = 0;
    } else if (i === content.length - 1) {
      throw reader.error("OID ends inside an arc");
    }
  }
  if (arcs.length === 0) throw reader.error("OID is empty");
  return arcs.join(".");
}

const UTC_TIME = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;
const GENERALIZED_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

/** RFC 5280 §4.1.2.5.1 and §4.1.2.5.2: YYMMDDHHMMSSZ (YY < 50 is 20YY) or YYYYMMDDHHMMSSZ. */
function parseTime(reader: DerReader, field: string): Date {
  const tag = reader.peekTag();
  const text = latin1(
    reader.read(tag === TAG_GENERALIZED_TIME ? TAG_GENERALIZED_TIME : TAG_UTC_TIME, field),
  );
  const match = (tag === TAG_GENERALIZED_TIME ? GENERALIZED_TIME : UTC_TIME).exec(text);
  if (match === null) throw reader.error(`${field} ${JSON.stringify(text)} is not a valid time`);
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number);
  const fullYear = tag === TAG_GENERALIZED_TIME ? year : year < 50 ? 2000 + year : 1900 + year;
  const date = new Date(Date.UTC(fullYear, month - 1, day, hour, minute, second));
  if (
    date.getUTCFullYear() !== fullYear || date.getUTCMonth() !== month - 1 ||
    date.getUTCDate() !== day || date.getUTCHours() !== hour || date.getUTCMinutes() !== minute ||
    date.getUTCSeconds() !== second
  ) {
    throw reader.error(`${field} ${JSON.stringify(text)} is not a valid time`);
  }
  return date;
}

function parseCommonName(name: DerReader): string | undefined {
  let commonName: string | undefined;
  while (!name.done()) {
    const rdn = name.enter(TAG_SET, "RelativeDistinguishedName");
    while (!rdn.done()) {
      const attribute = rdn.enter(TAG_SEQUENCE, "AttributeTypeAndValue");
      const type = decodeOid(attribute, attribute.read(TAG_OID, "type"));
      const tag = attribute.peekTag();
      const value = attribute.readAny("value");
      attribute.finish("AttributeTypeAndValue");
      if (type === OID_COMMON_NAME && commonName === undefined && tag !== undefined) {
        commonName = decodeString(attribute, tag, value);
      }
    }
  }
  return commonName;
}

function decodeString(reader: DerReader, tag: number, bytes: Uint8Array): string {
  if (tag === TAG_UTF8_STRING) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw reader.error("UTF8String is not valid UTF-8");
    }
  }
  if (tag === TAG_PRINTABLE_STRING || tag === TAG_IA5_STRING) {
    if (bytes.some((b) => b > 0x7f)) throw reader.error(`string tag 0x${hex2(tag)} is not ASCII`);
    return latin1(bytes);
  }
  throw reader.error(`string tag 0x${hex2(tag)} is not supported`);
}
