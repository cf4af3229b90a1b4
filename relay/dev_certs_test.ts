// Run with: deno test --unstable-net --allow-net --allow-read --allow-write [--allow-run] relay/dev_certs_test.ts
// (--allow-run=openssl enables the OpenSSL cross-checks; without it they are ignored.)
import { errorMessage } from "../shared/errors.ts";
import { assert, assertEquals, assertRejects } from "../tests/support/assert.ts";
import { testCerts } from "../tests/support/certs.ts";
import { skipUnless, skipUnlessCommands } from "../tests/support/skip.ts";
import {
  certificateMatchesKey,
  createDevCa,
  decodePem,
  issueServerCert,
  parseCertificate,
} from "../shared/dev_ca.ts";
import { loadOrCreateDevCerts } from "./dev_certs.ts";

const NAMES = { dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"] };
const ALPN = ["h3"];
const MS_PER_DAY = 86_400_000;

const info = (pem: string) => parseCertificate(decodePem(pem, "CERTIFICATE"));
const mode = async (path: string) => (await Deno.stat(path)).mode! & 0o777;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dev_certs_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("loadOrCreateDevCerts() creates the CA and server files, then reuses them", async () => {
  await withTempDir(async (parent) => {
    const dir = `${parent}/certs/dev`;
    const first = await loadOrCreateDevCerts(dir, NAMES);
    assertEquals(first.created, true);
    assertEquals(first.caPath, `${await Deno.realPath(dir)}/ca.pem`);
    assertEquals(await Deno.readTextFile(`${dir}/ca.pem`), first.caPem);
    assertEquals(await Deno.readTextFile(`${dir}/server.pem`), first.certPem);
    assertEquals(await Deno.readTextFile(`${dir}/server-key.pem`), first.keyPem);
    assert(
      (await Deno.readTextFile(`${dir}/ca-key.pem`)).startsWith("-----BEGIN PRIVATE KEY-----"),
    );
    assertEquals(await mode(`${dir}/ca-key.pem`), 0o600);
    assertEquals(await mode(`${dir}/server-key.pem`), 0o600);
    assertEquals(await mode(dir), 0o700);

    const server = info(first.certPem);
    assertEquals(server.dnsNames, ["localhost"]);
    assertEquals(server.ipAddresses, ["127.0.0.1", "::1"]);
    assertEquals(server.issuer, info(first.caPem).subject);
    assert(await certificateMatchesKey(first.certPem, first.keyPem));

    const second = await loadOrCreateDevCerts(dir, NAMES);
    assertEquals(second, { ...first, created: false });
    // A subset of the names, in another spelling, is covered too.
    const third = await loadOrCreateDevCerts(dir, {
      dnsNames: ["LOCALHOST"],
      ipAddresses: ["0:0:0:0:0:0:0:1"],
    });
    assertEquals(third.created, false);
    assertEquals(third.certPem, first.certPem);
  });
});

Deno.test("loadOrCreateDevCerts() reissues the server certificate from the same CA", async (t) => {
  await withTempDir(async (dir) => {
    const original = await loadOrCreateDevCerts(dir, NAMES);
    const caKey = await Deno.readTextFile(`${dir}/ca-key.pem`);
    let current = original;

    const expectReissued = async (
      names: typeof NAMES,
      options: { now?: Date } = {},
    ) => {
      const next = await loadOrCreateDevCerts(dir, names, options);
      assertEquals(next.created, true);
      assertEquals(next.caPem, original.caPem);
      assertEquals(await Deno.readTextFile(`${dir}/ca-key.pem`), caKey);
      assert(next.certPem !== current.certPem, "server certificate unchanged");
      assertEquals(
        info(next.certPem).authorityKeyIdentifier,
        info(original.caPem).subjectKeyIdentifier,
      );
      assert(await certificateMatchesKey(next.certPem, next.keyPem));
      assertEquals(await Deno.readTextFile(`${dir}/server.pem`), next.certPem);
      assertEquals(await mode(`${dir}/server-key.pem`), 0o600);
      current = next;
      return next;
    };

    await t.step("a new name is requested", async () => {
      const next = await expectReissued({ ...NAMES, dnsNames: ["localhost", "relay.test"] });
      assertEquals(info(next.certPem).dnsNames, ["localhost", "relay.test"]);
    });
    await t.step("a new address is requested", async () => {
      const next = await expectReissued({ ...NAMES, ipAddresses: ["198.18.0.1"] });
      assertEquals(info(next.certPem).ipAddresses, ["198.18.0.1"]);
    });
    await t.step("the certificate expires within a day", async () => {
      const notAfter = info(current.certPem).notAfter.getTime();
      await expectReissued(NAMES, { now: new Date(notAfter - MS_PER_DAY / 2) });
    });
    await t.step("the server key is missing", async () => {
      await Deno.remove(`${dir}/server-key.pem`);
      await expectReissued(NAMES);
    });
    await t.step("the server key belongs to another certificate", async () => {
      const foreign = await issueServerCert(await createDevCa(), NAMES);
      await Deno.writeTextFile(`${dir}/server-key.pem`, foreign.keyPem, { mode: 0o644 });
      await Deno.chmod(`${dir}/server-key.pem`, 0o644);
      await expectReissued(NAMES);
    });
    await t.step("the server certificate was issued by another CA", async () => {
      const foreign = await issueServerCert(await createDevCa(), NAMES);
      await Deno.writeTextFile(`${dir}/server.pem`, foreign.certPem);
      await Deno.writeTextFile(`${dir}/server-key.pem`, foreign.keyPem);
      await expectReissued(NAMES);
    });
    await t.step("the server certificate is not PEM", async () => {
      await Deno.writeTextFile(`${dir}/server.pem`, "garbage");
      await expectReissued(NAMES);
    });
  });
});

Deno.test("loadOrCreateDevCerts() refuses to replace a CA that clients may trust", async (t) => {
  await t.step("ca-key.pem missing", async () => {
    await withTempDir(async (dir) => {
      await loadOrCreateDevCerts(dir, NAMES);
      await Deno.remove(`${dir}/ca-key.pem`);
      const base = await Deno.realPath(dir);
      const error = await assertRejects(() => loadOrCreateDevCerts(dir, NAMES), Error);
      assertEquals(
        error.message,
        `Cannot load development CA: ${base}/ca.pem exists but ${base}/ca-key.pem is missing`,
      );
    });
  });
  await t.step("ca.pem missing", async () => {
    await withTempDir(async (dir) => {
      await loadOrCreateDevCerts(dir, NAMES);
      await Deno.remove(`${dir}/ca.pem`);
      const base = await Deno.realPath(dir);
      const error = await assertRejects(() => loadOrCreateDevCerts(dir, NAMES), Error);
      assertEquals(
        error.message,
        `Cannot load development CA: ${base}/ca-key.pem exists but ${base}/ca.pem is missing`,
      );
    });
  });
  await t.step("ca-key.pem from another CA", async () => {
    await withTempDir(async (dir) => {
      await loadOrCreateDevCerts(dir, NAMES);
      await Deno.writeTextFile(`${dir}/ca-key.pem`, (await createDevCa()).keyPem);
      const base = await Deno.realPath(dir);
      const error = await assertRejects(() => loadOrCreateDevCerts(dir, NAMES), Error);
      assertEquals(
        error.message,
        `Cannot load development CA from ${base}: ` +
          "Cannot import CA: the private key does not match the certificate",
      );
    });
  });
  await t.step("an expired CA", async () => {
    await withTempDir(async (dir) => {
      const created = await loadOrCreateDevCerts(dir, NAMES);
      const notAfter = info(created.caPem).notAfter;
      const error = await assertRejects(
        () => loadOrCreateDevCerts(dir, NAMES, { now: new Date(notAfter.getTime() + 1000) }),
        Error,
      );
      assert(
        error.message.startsWith(
          `Cannot use development CA ${created.caPath}: it expired on ${notAfter.toISOString()}; `,
        ),
        error.message,
      );
      assertEquals(await Deno.readTextFile(created.caPath), created.caPem);
    });
  });
});

// ---- Deno's QUIC (rustls) must accept these certificates ----

/** A QUIC server that answers one bidirectional stream per connection with the bytes reversed. */
class EchoServer {
  readonly #endpoint: Deno.QuicEndpoint;
  readonly #listener: Deno.QuicListener;
  readonly #loop: Promise<void>;
  readonly #connections: Promise<void>[] = [];
  readonly handshakeErrors: string[] = [];
  #stopped = false;

  constructor(hostname: string, cert: string, key: string) {
    this.#endpoint = new Deno.QuicEndpoint({ hostname, port: 0 });
    this.#listener = this.#endpoint.listen({ alpnProtocols: ALPN, cert, key });
    this.#loop = this.#acceptLoop();
  }

  get port(): number {
    return this.#endpoint.addr.port;
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#stopped) {
      let conn: Deno.QuicConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopped) return;
        this.handshakeErrors.push(errorMessage(error));
        continue;
      }
      this.#connections.push(EchoServer.#serve(conn));
    }
  }

  static async #serve(conn: Deno.QuicConn): Promise<void> {
    const streams = conn.incomingBidirectionalStreams.getReader();
    try {
      const { value: stream } = await streams.read();
      if (stream === undefined) return;
      const bytes = new Uint8Array(await new Response(stream.readable).arrayBuffer());
      const writer = stream.writable.getWriter();
      await writer.write(bytes.reverse());
      await writer.close();
      await conn.closed;
    } catch {
      // the client went away; nothing to answer
    } finally {
      streams.releaseLock();
    }
  }

  async close(): Promise<void> {
    this.#stopped = true;
    this.#listener.stop();
    this.#endpoint.close();
    await this.#loop;
    await Promise.all(this.#connections);
  }
}

/** Connects, sends `message` on a bidirectional stream, returns the reply; closes everything. */
async function exchange(
  options: Omit<Deno.ConnectQuicOptions<false>, "alpnProtocols" | "endpoint">,
  message: string,
): Promise<{ reply: string; protocol: string | undefined }> {
  const endpoint = new Deno.QuicEndpoint({
    hostname: options.hostname.includes(":") ? "::1" : "127.0.0.1",
    port: 0,
  });
  try {
    const conn = await Deno.connectQuic({ ...options, alpnProtocols: ALPN, endpoint });
    try {
      const stream = await conn.createBidirectionalStream();
      const writer = stream.writable.getWriter();
      await writer.write(new TextEncoder().encode(message));
      await writer.close();
      const reply = new TextDecoder().decode(await new Response(stream.readable).arrayBuffer());
      return { reply, protocol: conn.protocol };
    } finally {
      conn.close({ closeCode: 0, reason: "done" });
      await conn.closed;
    }
  } finally {
    endpoint.close();
  }
}

Deno.test("Deno QUIC accepts the development certificates and rejects an untrusted CA", async (t) => {
  await withTempDir(async (dir) => {
    const certs = await loadOrCreateDevCerts(dir, NAMES);
    const v4 = new EchoServer("127.0.0.1", certs.certPem, certs.keyPem);
    const v6 = new EchoServer("::1", certs.certPem, certs.keyPem);
    try {
      await t.step("trusting the CA, serverName localhost (dNSName)", async () => {
        const result = await exchange(
          { hostname: "127.0.0.1", port: v4.port, caCerts: [certs.caPem], serverName: "localhost" },
          "hello relay",
        );
        assertEquals(result, { reply: "yaler olleh", protocol: "h3" });
      });
      await t.step("trusting the CA, no serverName: 127.0.0.1 (iPAddress)", async () => {
        const result = await exchange(
          { hostname: "127.0.0.1", port: v4.port, caCerts: [certs.caPem] },
          "abc",
        );
        assertEquals(result.reply, "cba");
      });
      await t.step("trusting the CA over IPv6: ::1 (iPAddress)", async () => {
        const result = await exchange(
          { hostname: "::1", port: v6.port, caCerts: [await Deno.readTextFile(certs.caPath)] },
          "v6",
        );
        assertEquals(result.reply, "6v");
      });
      const rejected: [string, Partial<Deno.ConnectQuicOptions<false>>, string][] = [
        ["without caCerts", { serverName: "localhost" }, "invalid peer certificate: UnknownIssuer"],
        [
          "trusting another CA",
          { serverName: "localhost", caCerts: [(await createDevCa()).certPem] },
          "invalid peer certificate: UnknownIssuer",
        ],
        [
          "a name the certificate does not cover",
          { serverName: "example.com", caCerts: [certs.caPem] },
          'invalid peer certificate: certificate not valid for name "example.com"',
        ],
      ];
      for (const [name, extra, message] of rejected) {
        await t.step(`rejected ${name}`, async () => {
          const before = v4.handshakeErrors.length;
          const error = await assertRejects(
            () => exchange({ hostname: "127.0.0.1", port: v4.port, ...extra }, "x"),
            Error,
          );
          assert(error.message.includes(message), error.message);
          // The server saw the client abort the handshake for the same reason.
          for (let i = 0; i < 100 && v4.handshakeErrors.length === before; i++) {
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
          assertEquals(v4.handshakeErrors.length, before + 1);
          assert(v4.handshakeErrors[before].includes(message), v4.handshakeErrors[before]);
        });
      }
    } finally {
      await v4.close();
      await v6.close();
    }
  });
});

Deno.test("testCerts() is cached and works with Deno QUIC", async () => {
  const certs = await testCerts();
  assertEquals(await testCerts(), certs);
  assert((await testCerts()) === certs, "not the same object");
  const server = new EchoServer("127.0.0.1", certs.certPem, certs.keyPem);
  try {
    const result = await exchange(
      { hostname: "127.0.0.1", port: server.port, caCerts: [certs.caPem], serverName: "localhost" },
      "support",
    );
    assertEquals(result.reply, "troppus");
  } finally {
    await server.close();
  }
});

// ---- OpenSSL cross-checks, when the binary and --allow-run are available ----

async function opensslAvailable(): Promise<{ ignore: boolean }> {
  const permission = await Deno.permissions.query({ name: "run", command: "openssl" });
  if (permission.state !== "granted") {
    return skipUnless(
      false,
      "no permission to run openssl",
      "deno task test (it grants --allow-run)",
    );
  }
  return await skipUnlessCommands(["openssl"], async () => {
    try {
      return (await new Deno.Command("openssl", { args: ["version"], stdout: "null" }).output())
        .success;
    } catch {
      return false;
    }
  });
}

async function openssl(...args: string[]): Promise<{ ok: boolean; out: string }> {
  const output = await new Deno.Command("openssl", { args }).output();
  const decoder = new TextDecoder();
  return { ok: output.success, out: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
}

Deno.test({
  name: "OpenSSL reads and verifies the development certificates",
  ...await opensslAvailable(),
  fn: async (t) => {
    await withTempDir(async (dir) => {
      const certs = await loadOrCreateDevCerts(dir, NAMES);
      const server = `${dir}/server.pem`;
      await t.step("x509 -text shows the CA", async () => {
        const { ok, out } = await openssl("x509", "-in", certs.caPath, "-text", "-noout");
        assert(ok, out);
        for (
          const line of [
            "Version: 3 (0x2)",
            "Signature Algorithm: ecdsa-with-SHA256",
            "NIST CURVE: P-256",
            "X509v3 Basic Constraints: critical\n                CA:TRUE",
            "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
          ]
        ) assert(out.includes(line), `missing ${JSON.stringify(line)} in\n${out}`);
      });
      await t.step("x509 -text shows the server certificate", async () => {
        const { ok, out } = await openssl("x509", "-in", server, "-text", "-noout");
        assert(ok, out);
        for (
          const line of [
            "X509v3 Basic Constraints: critical\n                CA:FALSE",
            "X509v3 Key Usage: critical\n                Digital Signature",
            "X509v3 Extended Key Usage: \n                TLS Web Server Authentication",
            "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
          ]
        ) assert(out.includes(line), `missing ${JSON.stringify(line)} in\n${out}`);
      });
      await t.step("verify -CAfile for each name, as an SSL server", async () => {
        for (
          const check of [
            ["-verify_hostname", "localhost"],
            ["-verify_ip", "127.0.0.1"],
            ["-verify_ip", "::1"],
          ]
        ) {
          const result = await openssl(
            "verify",
            "-CAfile",
            certs.caPath,
            "-purpose",
            "sslserver",
            "-x509_strict",
            ...check,
            server,
          );
          assertEquals(result, { ok: true, out: `${server}: OK\n` });
        }
      });
      await t.step("verify fails for another name and another CA", async () => {
        const wrongName = await openssl(
          "verify",
          "-CAfile",
          certs.caPath,
          "-verify_hostname",
          "example.com",
          server,
        );
        assert(!wrongName.ok && wrongName.out.includes("hostname mismatch"), wrongName.out);
        const otherCa = `${dir}/other-ca.pem`;
        await Deno.writeTextFile(otherCa, (await createDevCa()).certPem);
        const wrongCa = await openssl("verify", "-CAfile", otherCa, server);
        assert(!wrongCa.ok && wrongCa.out.includes("unable to get local issuer"), wrongCa.out);
      });
      await t.step("the keys are PKCS#8 P-256 keys that match the certificates", async () => {
        for (
          const [cert, key] of [[certs.caPath, `${dir}/ca-key.pem`], [
            server,
            `${dir}/server-key.pem`,
          ]]
        ) {
          const fromKey = await openssl("pkey", "-in", key, "-pubout");
          const fromCert = await openssl("x509", "-in", cert, "-pubkey", "-noout");
          assert(fromKey.ok && fromCert.ok, fromKey.out + fromCert.out);
          assertEquals(fromKey.out, fromCert.out);
          const text = await openssl("pkey", "-in", key, "-text", "-noout");
          assert(text.out.includes("ASN1 OID: prime256v1"), text.out);
        }
      });
    });
  },
});
