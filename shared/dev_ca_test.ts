import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../tests/support/assert.ts";
import { fuzz, hex } from "../tests/support/bytes.ts";
import {
  CertificateError,
  certificateMatchesKey,
  createDevCa,
  decodePem,
  DEFAULT_CA_COMMON_NAME,
  type DevCa,
  encodePem,
  importDevCa,
  issueServerCert,
  NOT_BEFORE_BACKDATE_MS,
  parseCertificate,
} from "./dev_ca.ts";

const toHex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const includes = (haystack: Uint8Array, needle: string) => toHex(haystack).includes(needle);
const MS_PER_DAY = 86_400_000;

/** A tiny test-side TLV builder for malformed variants (short and long lengths). */
function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const header = length < 0x80
    ? [tag, length]
    : length < 0x100
    ? [tag, 0x81, length]
    : [tag, 0x82, length >> 8, length & 0xff];
  const out = new Uint8Array(header.length + length);
  out.set(header);
  let offset = header.length;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Ecdsa-Sig-Value (RFC 3279 §2.2.3) back to WebCrypto's r || s, written independently of dev_ca.ts. */
function ecdsaDerToRaw(der: Uint8Array): Uint8Array<ArrayBuffer> {
  assertEquals(der[0], 0x30);
  const raw = new Uint8Array(64);
  let offset = 2;
  for (const half of [0, 32]) {
    assertEquals(der[offset], 0x02);
    const length = der[offset + 1];
    const value = der.subarray(offset + 2, offset + 2 + length);
    const trimmed = value[0] === 0 ? value.subarray(1) : value;
    assert(trimmed.length <= 32, "INTEGER longer than 32 bytes");
    raw.set(trimmed, half + 32 - trimmed.length);
    offset += 2 + length;
  }
  assertEquals(offset, der.length);
  return raw;
}

async function verifySignedBy(certPem: string, issuerPem: string): Promise<boolean> {
  const cert = parseCertificate(decodePem(certPem, "CERTIFICATE"));
  const issuer = parseCertificate(decodePem(issuerPem, "CERTIFICATE"));
  const key = await crypto.subtle.importKey(
    "spki",
    issuer.subjectPublicKeyInfo.slice(),
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["verify"],
  );
  return await crypto.subtle.verify(
    { name: "ECDSA", hash: "SHA-256" },
    key,
    ecdsaDerToRaw(cert.signature),
    cert.tbsCertificate.slice(),
  );
}

// A certificate written by hand (RFC 5280 §4.1); lengths in hex.
const HAND_BUILT = hex(
  "3081e3" + //                          Certificate SEQUENCE, 227 bytes
    "3081c9" + //                          TBSCertificate SEQUENCE, 201 bytes
    "a003 020102" + //                       [0] EXPLICIT version INTEGER 2 (v3)
    "020105" + //                            serialNumber INTEGER 5
    "300a 06082a8648ce3d040302" + //         signature: ecdsa-with-SHA256, parameters absent
    "300c 310a 3008 0603550403 0c0161" + //  issuer: SET { SEQ { commonName, UTF8String "a" } }
    "3020" + //                              validity SEQUENCE, 32 bytes
    "170d 3235303130313030303030305a" + //     notBefore UTCTime "250101000000Z"
    "180f 32303530303130313030303030305a" + // notAfter GeneralizedTime "20500101000000Z"
    "300c 310a 3008 0603550403 130162" + //  subject: commonName PrintableString "b"
    "301a" + //                              subjectPublicKeyInfo SEQUENCE, 26 bytes
    "3013 06072a8648ce3d0201 06082a8648ce3d030107" + // id-ecPublicKey, prime256v1
    "0303 00 0401" + //                        subjectPublicKey BIT STRING (a stub point)
    "a359 3057" + //                         [3] EXPLICIT extensions SEQUENCE, 87 bytes
    "300f 0603551d13 0101ff 0405 30030101ff" + // basicConstraints, critical, { cA TRUE }
    "3024 0603551d11 041d 301b" + //         subjectAltName OCTET STRING { GeneralNames }
    "820178" + //                              [2] dNSName "x"
    "87047f000001" + //                        [7] iPAddress 127.0.0.1
    "8710 00000000000000000000000000000001" + // [7] iPAddress ::1
    "300d 0603551d0e 0406 040401020304" + // subjectKeyIdentifier 01020304
    "300f 0603551d23 0408 3006 800405060708" + // authorityKeyIdentifier [0] 05060708
    "300a 06082a8648ce3d040302" + //       signatureAlgorithm: ecdsa-with-SHA256
    "0309 00 3006020101020102", //         signatureValue BIT STRING: SEQ { r 1, s 2 }
);

Deno.test("parseCertificate() reads a hand-built certificate", () => {
  assertEquals(HAND_BUILT.length, 3 + 227);
  const info = parseCertificate(HAND_BUILT);
  assertEquals(info.version, 3);
  assertEquals(info.serialNumber, hex("05"));
  assertEquals(info.issuer, hex("300c310a30080603550403 0c0161"));
  assertEquals(info.subject, hex("300c310a30080603550403 130162"));
  assertEquals(info.commonName, "b");
  assertEquals(info.notBefore.toISOString(), "2025-01-01T00:00:00.000Z");
  assertEquals(info.notAfter.toISOString(), "2050-01-01T00:00:00.000Z");
  assertEquals(toHex(info.subjectPublicKeyInfo).slice(0, 4), "301a");
  assertEquals(info.subjectPublicKeyInfo.length, 28);
  assertEquals(info.isCa, true);
  assertEquals(info.dnsNames, ["x"]);
  assertEquals(info.ipAddresses, ["127.0.0.1", "::1"]);
  assertEquals(info.subjectKeyIdentifier, hex("01020304"));
  assertEquals(info.authorityKeyIdentifier, hex("05060708"));
  assertEquals(info.signatureAlgorithm, "1.2.840.10045.4.3.2");
  assertEquals(info.signature, hex("3006020101020102"));
  assertEquals(info.tbsCertificate, HAND_BUILT.subarray(3, 3 + 3 + 201));
});

// Made by `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 30
// -subj "/O=Fixture Org/CN=relay.example" -addext "subjectAltName=DNS:relay.example,
// DNS:*.relay.example,IP:192.0.2.7,IP:2001:db8::7" -addext "basicConstraints=critical,CA:FALSE"`
// (OpenSSL 3.0.19): an independent encoder, with a 20-byte serial and an organizationName.
const OPENSSL_FIXTURE = `
-----BEGIN CERTIFICATE-----
MIIB8zCCAZmgAwIBAgIUI6LO8UwyVfsNbht0s20AjVTehNwwCgYIKoZIzj0EAwIw
LjEUMBIGA1UECgwLRml4dHVyZSBPcmcxFjAUBgNVBAMMDXJlbGF5LmV4YW1wbGUw
HhcNMjYxMTI1MTIwNTUxWhcNMjYxMjI1MTIwNTUxWjAuMRQwEgYDVQQKDAtGaXh0
dXJlIE9yZzEWMBQGA1UEAwwNcmVsYXkuZXhhbXBsZTBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABP9UvXLgBoQvI5/GXiHCf/yFVWk+wdWC+MOddlreCbEBKb28Y5ec
MvMrFIjGOpf7N1WHenuGLgtbpVVmud5A5ZCjgZQwgZEwHQYDVR0OBBYEFEmRDPb2
UddOsbaBkClLzbt1DfyNMB8GA1UdIwQYMBaAFEmRDPb2UddOsbaBkClLzbt1DfyN
MEEGA1UdEQQ6MDiCDXJlbGF5LmV4YW1wbGWCDyoucmVsYXkuZXhhbXBsZYcEwAAC
B4cQIAENuAAAAAAAAAAAAAAABzAMBgNVHRMBAf8EAjAAMAoGCCqGSM49BAMCA0gA
MEUCIQDc/i7WymvF7is3UCTO1MXQ1Lg2wHlBbZkoznCHGJkyOwIgEOxL2UQSn9P1
lDzxYCHd0sT4yBp61xD46Q8MvpEK2Gg=
-----END CERTIFICATE-----
`;

Deno.test("parseCertificate() reads a certificate made by OpenSSL", async () => {
  const info = parseCertificate(decodePem(OPENSSL_FIXTURE, "CERTIFICATE"));
  assertEquals(info.version, 3);
  assertEquals(toHex(info.serialNumber), "23a2cef14c3255fb0d6e1b74b36d008d54de84dc");
  assertEquals(info.commonName, "relay.example");
  assertEquals(info.notBefore.toISOString(), "2026-11-25T12:05:51.000Z");
  assertEquals(info.notAfter.toISOString(), "2026-12-25T12:05:51.000Z");
  assertEquals(info.isCa, false);
  assertEquals(info.dnsNames, ["relay.example", "*.relay.example"]);
  assertEquals(info.ipAddresses, ["192.0.2.7", "2001:db8::7"]);
  assertEquals(toHex(info.subjectKeyIdentifier!), "49910cf6f651d74eb1b68190294bcdbb750dfc8d");
  assertEquals(info.authorityKeyIdentifier, info.subjectKeyIdentifier);
  assertEquals(info.issuer, info.subject);
  // Self-signed: our parse of its fields and signature must verify with WebCrypto.
  assert(await verifySignedBy(OPENSSL_FIXTURE, OPENSSL_FIXTURE));
});

Deno.test("createDevCa() makes a self-signed X.509 v3 CA", async (t) => {
  const now = new Date(Date.UTC(2030, 5, 15, 12, 30, 45, 678));
  const ca = await createDevCa({ commonName: "Dev", validDays: 10, now });
  const der = decodePem(ca.certPem, "CERTIFICATE");
  const info = parseCertificate(der);

  await t.step("fields", () => {
    assertEquals(info.version, 3);
    assertEquals(info.commonName, "Dev");
    assertEquals(info.isCa, true);
    assertEquals(info.issuer, info.subject);
    assertEquals(info.notBefore.getTime(), Date.UTC(2030, 5, 15, 11, 30, 45));
    assertEquals(info.notAfter.getTime(), Date.UTC(2030, 5, 25, 12, 30, 45));
    assertEquals(info.dnsNames, []);
    assertEquals(info.signatureAlgorithm, "1.2.840.10045.4.3.2");
  });
  await t.step("serial is 16 random bytes, positive, without a leading zero", () => {
    assertEquals(info.serialNumber.length, 16);
    assert(info.serialNumber[0] >= 0x40 && info.serialNumber[0] <= 0x7f);
  });
  await t.step("hand-checked DER of the fixed fields", () => {
    assertEquals(toHex(der.subarray(0, 2)), "3082"); // Certificate SEQUENCE, 2 length bytes
    assertEquals(toHex(der.subarray(4, 6)), "3082"); // TBSCertificate SEQUENCE, 2 length bytes
    // [0] { INTEGER 2 } (v3), then the serialNumber INTEGER header: 16 content bytes
    assertEquals(toHex(der.subarray(8, 15)), "a003020102" + "0210");
    assert(includes(der, "300a06082a8648ce3d040302"), "ecdsa-with-SHA256, parameters absent");
    assert(includes(der, "300e310c300a06035504030c03446576"), "Name: CN UTF8String Dev");
    assert(includes(der, "170d3330303631353131333034355a"), "notBefore UTCTime 300615113045Z");
    assert(includes(der, "170d3330303632353132333034355a"), "notAfter UTCTime 300625123045Z");
    // basicConstraints (2.5.29.19), critical TRUE, OCTET STRING { SEQUENCE { cA TRUE } }
    assert(includes(der, "300f0603551d130101ff040530030101ff"), "basicConstraints cA");
    // keyUsage (2.5.29.15), critical, BIT STRING 1 unused bit, 0x06 = keyCertSign(5)|cRLSign(6)
    assert(includes(der, "300e0603551d0f0101ff040403020106"), "keyUsage");
  });
  await t.step(
    "SKI is SHA-1 of the public key (RFC 5280 §4.2.1.2 (1)), AKI repeats it",
    async () => {
      const raw = new Uint8Array(await crypto.subtle.exportKey("raw", ca.signer.publicKey));
      const keyId = new Uint8Array(await crypto.subtle.digest("SHA-1", raw));
      assertEquals(info.subjectKeyIdentifier, keyId);
      assertEquals(info.authorityKeyIdentifier, keyId);
      assert(includes(der, "301d0603551d0e04160414" + toHex(keyId)), "SKI extension");
      assert(includes(der, "301f0603551d230418301680" + "14" + toHex(keyId)), "AKI extension");
    },
  );
  await t.step("the signature verifies with the CA's own key", async () => {
    assert(await verifySignedBy(ca.certPem, ca.certPem));
  });
  await t.step("the key PEM is PKCS#8 for the same key", async () => {
    assert(ca.keyPem.startsWith("-----BEGIN PRIVATE KEY-----\n"));
    assert(await certificateMatchesKey(ca.certPem, ca.keyPem));
  });
  await t.step("defaults: common name and lifetime", async () => {
    const before = Date.now();
    const defaults = parseCertificate(decodePem((await createDevCa()).certPem, "CERTIFICATE"));
    assertMatch(defaults.commonName ?? "", new RegExp(`^${DEFAULT_CA_COMMON_NAME} [0-9a-f]{8}$`));
    const lifetime = defaults.notAfter.getTime() - defaults.notBefore.getTime();
    assert(Math.abs(lifetime - (3650 * MS_PER_DAY + NOT_BEFORE_BACKDATE_MS)) <= 1000);
    assert(defaults.notBefore.getTime() <= before - NOT_BEFORE_BACKDATE_MS + 1000);
  });
  await t.step("two CAs have different serials, keys and default names", async () => {
    const [a, b] = await Promise.all([createDevCa(), createDevCa()]);
    const other = parseCertificate(decodePem(a.certPem, "CERTIFICATE"));
    assert(other.commonName !== parseCertificate(decodePem(b.certPem, "CERTIFICATE")).commonName);
    assert(toHex(other.serialNumber) !== toHex(info.serialNumber));
    assert(toHex(other.subjectPublicKeyInfo) !== toHex(info.subjectPublicKeyInfo));
  });
});

Deno.test("createDevCa() switches to GeneralizedTime from 2050 (RFC 5280 §4.1.2.5)", async () => {
  const now = new Date(Date.UTC(2049, 11, 1));
  const der = decodePem((await createDevCa({ validDays: 60, now })).certPem, "CERTIFICATE");
  // notBefore 2049-11-30T23:00:00Z as UTCTime, notAfter 2050-01-30T00:00:00Z as GeneralizedTime
  assert(includes(der, "3020" + "170d3439313133303233303030305a"), "UTCTime 491130230000Z");
  assert(includes(der, "180f32303530303133303030303030305a"), "GeneralizedTime 20500130000000Z");
  const info = parseCertificate(der);
  assertEquals(info.notAfter.toISOString(), "2050-01-30T00:00:00.000Z");
});

Deno.test("issueServerCert() issues a serverAuth certificate with DNS and IP names", async (t) => {
  const now = new Date(Date.UTC(2030, 0, 1));
  const ca = await createDevCa({ now });
  const server = await issueServerCert(ca, {
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1", "::1"],
    validDays: 30,
    now,
  });
  const der = decodePem(server.certPem, "CERTIFICATE");
  const info = parseCertificate(der);
  const caInfo = parseCertificate(decodePem(ca.certPem, "CERTIFICATE"));

  await t.step("names, issuer, validity", () => {
    assertEquals(info.version, 3);
    assertEquals(info.isCa, false);
    assertEquals(info.commonName, "localhost");
    assertEquals(info.dnsNames, ["localhost"]);
    assertEquals(info.ipAddresses, ["127.0.0.1", "::1"]);
    assertEquals(info.issuer, caInfo.subject);
    assertEquals(info.notBefore.getTime(), now.getTime() - NOT_BEFORE_BACKDATE_MS);
    assertEquals(info.notAfter.getTime(), now.getTime() + 30 * MS_PER_DAY);
    assertEquals(info.serialNumber.length, 16);
  });
  await t.step("hand-checked extension DER", () => {
    // basicConstraints critical, empty SEQUENCE: cA FALSE is the DEFAULT and so omitted (X.690 §11.5)
    assert(includes(der, "300c0603551d130101ff04023000"), "basicConstraints");
    // keyUsage critical, BIT STRING 7 unused bits, 0x80 = digitalSignature(0)
    assert(includes(der, "300e0603551d0f0101ff040403020780"), "keyUsage");
    // extKeyUsage (2.5.29.37) { id-kp-serverAuth 1.3.6.1.5.5.7.3.1 }
    assert(includes(der, "30130603551d25040c300a06082b06010505070301"), "extKeyUsage");
    // subjectAltName { [2] "localhost", [7] 7f000001, [7] ::1 }
    assert(
      includes(
        der,
        "302c0603551d110425" + "3023" + "82096c6f63616c686f7374" + "87047f000001" +
          "8710" + "00000000000000000000000000000001",
      ),
      "subjectAltName",
    );
  });
  await t.step("AKI is the CA's SKI; SKI is SHA-1 of the server key", async () => {
    assertEquals(info.authorityKeyIdentifier, caInfo.subjectKeyIdentifier);
    const spki = info.subjectPublicKeyInfo;
    const point = spki.subarray(spki.length - 65); // BIT STRING of a 65-byte uncompressed point
    assertEquals(point[0], 0x04);
    const keyId = new Uint8Array(await crypto.subtle.digest("SHA-1", point.slice()));
    assertEquals(info.subjectKeyIdentifier, keyId);
  });
  await t.step("signed by the CA, not by itself", async () => {
    assert(await verifySignedBy(server.certPem, ca.certPem));
    assert(!await verifySignedBy(server.certPem, server.certPem));
  });
  await t.step("the key matches the certificate and not the CA", async () => {
    assert(await certificateMatchesKey(server.certPem, server.keyPem));
    assert(!await certificateMatchesKey(server.certPem, ca.keyPem));
  });
  await t.step("notAfter is cut at the CA's notAfter", async () => {
    const shortCa = await createDevCa({ validDays: 5, now });
    const long = await issueServerCert(shortCa, { dnsNames: ["a"], ipAddresses: [], now });
    const longInfo = parseCertificate(decodePem(long.certPem, "CERTIFICATE"));
    assertEquals(
      longInfo.notAfter,
      parseCertificate(decodePem(shortCa.certPem, "CERTIFICATE")).notAfter,
    );
  });
  await t.step("an IP-only certificate uses the first address as common name", async () => {
    const ipOnly = await issueServerCert(ca, { dnsNames: [], ipAddresses: ["2001:db8::1"] });
    const ipInfo = parseCertificate(decodePem(ipOnly.certPem, "CERTIFICATE"));
    assertEquals(ipInfo.commonName, "2001:db8::1");
    assertEquals(ipInfo.dnsNames, []);
    assertEquals(ipInfo.ipAddresses, ["2001:db8::1"]);
  });
});

Deno.test("certificates carry minimal positive DER INTEGERs (X.690 §8.3.2) for serial, r and s", async () => {
  // Each random value has its top bit set half the time, so 8 certificates exercise both forms.
  const ca = await createDevCa();
  const pems = [ca.certPem];
  for (let i = 0; i < 7; i++) {
    pems.push((await issueServerCert(ca, { dnsNames: ["a"], ipAddresses: [] })).certPem);
  }
  const seen = new Set<string>();
  for (const pem of pems) {
    const info = parseCertificate(decodePem(pem, "CERTIFICATE"));
    assertEquals(info.serialNumber.length, 16);
    assert(info.serialNumber[0] >= 0x40 && info.serialNumber[0] <= 0x7f, toHex(info.serialNumber));
    const sig = info.signature; // SEQUENCE { INTEGER r, INTEGER s }
    assertEquals(sig[0], 0x30);
    assertEquals(sig[1], sig.length - 2);
    let offset = 2;
    for (const _ of ["r", "s"]) {
      assertEquals(sig[offset], 0x02);
      const value = sig.subarray(offset + 2, offset + 2 + sig[offset + 1]);
      assert(value[0] < 0x80, `negative INTEGER ${toHex(value)}`);
      assert(value[0] !== 0 || value[1] >= 0x80, `non-minimal INTEGER ${toHex(value)}`);
      assert(value.length <= 33);
      seen.add(value[0] === 0 ? "padded" : "plain");
      offset += 2 + value.length;
    }
    assertEquals(offset, sig.length);
    assert(await verifySignedBy(pem, ca.certPem));
  }
  assertEquals(seen.size, 2, "expected both padded and unpadded INTEGERs among 16");
});

Deno.test("issueServerCert() rejects bad names, a non-CA and a foreign signer", async (t) => {
  const ca = await createDevCa();
  const ok = { dnsNames: ["localhost"], ipAddresses: [] };
  const cases: [string, () => Promise<unknown>, string][] = [
    [
      "no names",
      () => issueServerCert(ca, { dnsNames: [], ipAddresses: [] }),
      "Cannot issue certificate: no DNS names or IP addresses given",
    ],
    [
      "a DNS name with a space",
      () => issueServerCert(ca, { dnsNames: ["bad name"], ipAddresses: [] }),
      'Cannot issue certificate: "bad name" is not a valid DNS name',
    ],
    [
      "a DNS label ending in a hyphen",
      () => issueServerCert(ca, { dnsNames: ["a-.example"], ipAddresses: [] }),
      'Cannot issue certificate: "a-.example" is not a valid DNS name',
    ],
    [
      "an IPv4 octet above 255",
      () => issueServerCert(ca, { dnsNames: [], ipAddresses: ["300.1.1.1"] }),
      'Cannot parse IP address: "300.1.1.1"',
    ],
    [
      "zero days",
      () => issueServerCert(ca, { ...ok, validDays: 0 }),
      "Cannot issue certificate: validDays 0 is not an integer from 1 to 36500",
    ],
    [
      "a server certificate as CA",
      async () => {
        const server = await issueServerCert(ca, ok);
        return issueServerCert({ ...server, signer: ca.signer }, ok);
      },
      "Cannot issue certificate: the CA certificate is not a CA",
    ],
    [
      "another CA's signer",
      async () => issueServerCert({ ...ca, signer: (await createDevCa()).signer }, ok),
      "Cannot issue certificate: the signer's public key does not match the CA certificate",
    ],
  ];
  for (const [name, fn, message] of cases) {
    await t.step(name, async () => {
      const error = await assertRejects(fn, CertificateError);
      assertEquals(error.message, message);
    });
  }
});

Deno.test("importDevCa() rebuilds a CA that issues verifiable certificates", async (t) => {
  const original = await createDevCa();
  await t.step("round trip through PEM", async () => {
    const imported: DevCa = await importDevCa(original.certPem, original.keyPem);
    const server = await issueServerCert(imported, { dnsNames: ["x.test"], ipAddresses: [] });
    assert(await verifySignedBy(server.certPem, original.certPem));
    const info = parseCertificate(decodePem(server.certPem, "CERTIFICATE"));
    const caInfo = parseCertificate(decodePem(original.certPem, "CERTIFICATE"));
    assertEquals(info.authorityKeyIdentifier, caInfo.subjectKeyIdentifier);
  });
  await t.step("another CA's key", async () => {
    const other = await createDevCa();
    const error = await assertRejects(
      () => importDevCa(original.certPem, other.keyPem),
      CertificateError,
    );
    assertEquals(error.message, "Cannot import CA: the private key does not match the certificate");
  });
  await t.step("a certificate that is not a CA", async () => {
    const server = await issueServerCert(original, { dnsNames: ["a"], ipAddresses: [] });
    const error = await assertRejects(
      () => importDevCa(server.certPem, server.keyPem),
      CertificateError,
    );
    assertEquals(error.message, "Cannot import CA: the certificate is not a CA");
  });
  await t.step("a key that is not ECDSA P-256", async () => {
    const ed = await crypto.subtle.generateKey("Ed25519", true, ["sign", "verify"]);
    const pkcs8 = new Uint8Array(
      await crypto.subtle.exportKey("pkcs8", (ed as CryptoKeyPair).privateKey),
    );
    const error = await assertRejects(
      () => importDevCa(original.certPem, encodePem("PRIVATE KEY", pkcs8)),
      CertificateError,
    );
    assert(error.message.startsWith("Cannot import key: not an ECDSA P-256 key ("), error.message);
  });
  await t.step("a PEM without a key", async () => {
    const error = await assertRejects(
      () => importDevCa(original.certPem, original.certPem),
      CertificateError,
    );
    assertEquals(error.message, "Cannot parse PEM: no PRIVATE KEY block");
  });
});

Deno.test("encodePem() and decodePem() follow RFC 7468", async (t) => {
  await t.step("hand-checked encoding of 3 bytes", () => {
    assertEquals(
      encodePem("TEST", hex("000102")),
      "-----BEGIN TEST-----\nAAEC\n-----END TEST-----\n",
    );
  });
  await t.step("64-character lines and a round trip", () => {
    const bytes = Uint8Array.from({ length: 100 }, (_, i) => i * 7);
    const pem = encodePem("CERTIFICATE", bytes);
    const lines = pem.trimEnd().split("\n");
    assertEquals(lines.map((l) => l.length), [27, 64, 64, 136 - 128, 25]);
    assertEquals(decodePem(pem, "CERTIFICATE"), bytes);
  });
  await t.step("text around the block and CRLF line ends are ignored", () => {
    const pem = "subject=x\r\n" + encodePem("X", hex("ff00")).replaceAll("\n", "\r\n") + "tail";
    assertEquals(decodePem(pem, "X"), hex("ff00"));
  });
  await t.step("the first of several blocks with the label", () => {
    const pem = encodePem("A", hex("01")) + encodePem("B", hex("02")) + encodePem("A", hex("03"));
    assertEquals(decodePem(pem, "B"), hex("02"));
    assertEquals(decodePem(pem, "A"), hex("01"));
  });
  const bad: [string, string, string][] = [
    ["no block", "hello", "Cannot parse PEM: no X block"],
    ["no END line", "-----BEGIN X-----\nAAEC\n", "Cannot parse PEM: X block has no END line"],
    [
      "a length that is not a multiple of 4",
      "-----BEGIN X-----\nAAE\n-----END X-----",
      "Cannot parse PEM: X block is not valid base64",
    ],
    [
      "a character outside base64",
      "-----BEGIN X-----\nAA*C\n-----END X-----",
      "Cannot parse PEM: X block is not valid base64",
    ],
    [
      "padding in the middle",
      "-----BEGIN X-----\nAA==AAAA\n-----END X-----",
      "Cannot parse PEM: X block is not valid base64",
    ],
  ];
  for (const [name, pem, message] of bad) {
    await t.step(`rejects ${name}`, () => {
      assertEquals(assertThrows(() => decodePem(pem, "X"), CertificateError).message, message);
    });
  }
});

/** Builds a certificate around `tbsParts` with test-side TLVs, for malformed variants. */
function certificateWith(...tbsParts: Uint8Array[]): Uint8Array {
  return tlv(
    0x30,
    tlv(0x30, ...tbsParts),
    hex("300a06082a8648ce3d040302"),
    hex("0309003006020101020102"),
  );
}
const VERSION = hex("a003020102");
const SERIAL = hex("020105");
const ALGORITHM = hex("300a06082a8648ce3d040302");
const NAME = hex("300c310a300806035504030c0161");
const VALIDITY = hex("3020170d3235303130313030303030305a180f32303530303130313030303030305a");
const SPKI = hex("301a301306072a8648ce3d020106082a8648ce3d0301070303000401");
const SKI = hex("300d0603551d0e0406040401020304");
const extensions = (...list: Uint8Array[]) => tlv(0xa3, tlv(0x30, ...list));
const withExtensions = (...list: Uint8Array[]) =>
  certificateWith(VERSION, SERIAL, ALGORITHM, NAME, VALIDITY, NAME, SPKI, extensions(...list));

Deno.test("parseCertificate() rejects malformed DER with a clear message", async (t) => {
  const cases: [string, Uint8Array, string][] = [
    ["empty input", new Uint8Array(0), "Certificate is missing at offset 0"],
    [
      "a SET instead of a SEQUENCE",
      hex("3100"),
      "expected tag 0x30 for Certificate at offset 0, got 0x31",
    ],
    [
      "a truncated certificate",
      HAND_BUILT.subarray(0, 100),
      "length 227 of Certificate exceeds the 97 remaining bytes",
    ],
    [
      "a trailing byte",
      Uint8Array.of(...HAND_BUILT, 0),
      "1 unexpected byte at the end of Certificate",
    ],
    ["an indefinite length", hex("3080"), "indefinite length at offset 1 is not DER"],
    [
      "a long-form length below 128",
      hex("30810100"),
      "length at offset 1 is not minimally encoded",
    ],
    [
      "a length with a leading zero byte",
      hex("3082000100"),
      "length at offset 1 is not minimally encoded",
    ],
    ["a 5-byte length", hex("30850000000001"), "length of 5 bytes at offset 1 is too long"],
    [
      "a GeneralName with a high tag number",
      withExtensions(hex("300c 0603551d11 0405 3003 9f0100")),
      // Certificate 3 + TBSCertificate 3 + 110 bytes of fields + a3 10 30 0e 30 0c + OID 5 + 04 05 30 03
      "high tag number form at offset 131 is not supported",
    ],
    [
      "version 6",
      certificateWith(hex("a003020105"), SERIAL, ALGORITHM, NAME, VALIDITY, NAME, SPKI),
      "version 0x05 is not v1, v2 or v3",
    ],
    [
      "an empty serial number",
      certificateWith(VERSION, hex("0200"), ALGORITHM, NAME, VALIDITY, NAME, SPKI),
      "serialNumber is empty",
    ],
    [
      "a missing subjectPublicKeyInfo",
      certificateWith(VERSION, SERIAL, ALGORITHM, NAME, VALIDITY, NAME),
      "subjectPublicKeyInfo is missing at offset 86",
    ],
    [
      "month 13",
      certificateWith(
        VERSION,
        SERIAL,
        ALGORITHM,
        NAME,
        hex("301e170d3235313330313030303030305a170d3235303130313030303030305a"),
        NAME,
        SPKI,
      ),
      'notBefore "251301000000Z" is not a valid time',
    ],
    [
      "February 30",
      certificateWith(
        VERSION,
        SERIAL,
        ALGORITHM,
        NAME,
        hex("301e170d3235303130313030303030305a170d3235303233303030303030305a"),
        NAME,
        SPKI,
      ),
      'notAfter "250230000000Z" is not a valid time',
    ],
    [
      "a time without seconds",
      certificateWith(
        VERSION,
        SERIAL,
        ALGORITHM,
        NAME,
        hex("301c170b32353031303130303030 5a170d3235303130313030303030305a"),
        NAME,
        SPKI,
      ),
      'notBefore "2501010000Z" is not a valid time',
    ],
    ["a duplicate extension", withExtensions(SKI, SKI), "extension 2.5.29.14 appears twice"],
    [
      "a BOOLEAN that is not 0x00 or 0xff",
      withExtensions(hex("30100603551d0e010101 0406040401020304")),
      "critical is not a DER BOOLEAN",
    ],
    [
      "a 5-byte iPAddress",
      withExtensions(hex("30100603551d110409 3007 87050102030405")),
      "iPAddress length 5 is not 4 or 16",
    ],
    [
      "a dNSName that is not ASCII",
      withExtensions(hex("300e0603551d110407 3005 8203 61ff62")),
      "string tag 0x16 is not ASCII",
    ],
    [
      "a UTF8String common name that is not UTF-8",
      certificateWith(
        VERSION,
        SERIAL,
        ALGORITHM,
        NAME,
        VALIDITY,
        hex("300c310a30080603550403 0c01ff"),
        SPKI,
      ),
      "UTF8String is not valid UTF-8",
    ],
    [
      "an OID ending inside an arc",
      withExtensions(hex("300c 0603551d8e 0405 040301020 3")),
      "OID ends inside an arc",
    ],
    [
      "an OID arc with a leading 0x80",
      withExtensions(hex("300d 0604551d800e 0405 0403010203")),
      "OID arc has a leading 0x80 byte",
    ],
    [
      "a signature BIT STRING with unused bits",
      tlv(
        0x30,
        tlv(0x30, VERSION, SERIAL, ALGORITHM, NAME, VALIDITY, NAME, SPKI),
        ALGORITHM,
        hex("03020100"),
      ),
      "BIT STRING is empty or not whole bytes",
    ],
  ];
  for (const [name, der, message] of cases) {
    await t.step(name, () => {
      const error = assertThrows(() => parseCertificate(der), CertificateError);
      assertEquals(error.message, `Cannot parse certificate: ${message}`);
    });
  }
  await t.step("a certificate without extensions (v1) parses", () => {
    const info = parseCertificate(certificateWith(SERIAL, ALGORITHM, NAME, VALIDITY, NAME, SPKI));
    assertEquals(info.version, 1);
    assertEquals(info.isCa, false);
    assertEquals(info.subjectKeyIdentifier, undefined);
  });
});

Deno.test("parseCertificate() only throws CertificateError on mutated and random input", () =>
  fuzz(async (random) => {
    const ca = await createDevCa();
    const server = await issueServerCert(ca, {
      dnsNames: ["localhost", "relay.test"],
      ipAddresses: ["127.0.0.1", "::1"],
    });
    const seeds = [
      HAND_BUILT,
      decodePem(OPENSSL_FIXTURE, "CERTIFICATE"),
      decodePem(ca.certPem, "CERTIFICATE"),
      decodePem(server.certPem, "CERTIFICATE"),
    ];
    let parsed = 0;
    let rejected = 0;
    const attempt = (bytes: Uint8Array) => {
      try {
        parseCertificate(bytes);
        parsed++;
      } catch (error) {
        if (!(error instanceof CertificateError)) throw error;
        rejected++;
      }
    };
    for (let i = 0; i < 4000; i++) {
      const seed = seeds[i % seeds.length];
      const bytes = seed.slice();
      switch (random.int(4)) {
        case 0: // flip a few bytes
          for (let k = 0; k <= random.int(4); k++) {
            bytes[random.int(bytes.length)] = random.int(256);
          }
          attempt(bytes);
          break;
        case 1: // truncate
          attempt(bytes.subarray(0, random.int(bytes.length)));
          break;
        case 2: { // insert a byte
          const at = random.int(bytes.length);
          attempt(Uint8Array.of(...bytes.subarray(0, at), random.int(256), ...bytes.subarray(at)));
          break;
        }
        default: // random bytes behind a plausible SEQUENCE header
          attempt(Uint8Array.of(0x30, ...random.fill(new Uint8Array(1 + random.int(300)))));
      }
    }
    assert(rejected > 1000, `only ${rejected} inputs rejected`);
    assert(parsed > 0, "no mutated input parsed (flips inside signatures should)");
  }));

Deno.test("decodePem() only throws CertificateError on mutated PEM", () =>
  fuzz((random) => {
    const pem = OPENSSL_FIXTURE;
    const alphabet = "AZaz09+/=- \n\r!";
    for (let i = 0; i < 3000; i++) {
      const chars = [...pem];
      for (let k = 0; k < 1 + Math.floor(random() * 3); k++) {
        chars[Math.floor(random() * chars.length)] =
          alphabet[Math.floor(random() * alphabet.length)];
      }
      try {
        parseCertificate(decodePem(chars.join(""), "CERTIFICATE"));
      } catch (error) {
        if (!(error instanceof CertificateError)) throw error;
      }
    }
  }));
