import { assert, assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { setUpDevCerts, splitNames } from "./dev_certs.ts";

Deno.test("splitNames() puts IPv4 and IPv6 addresses apart from DNS names", () => {
  assertEquals(splitNames(["relay", "198.19.1.2", "fd00::2", "relay.example"]), {
    dnsNames: ["relay", "relay.example"],
    ipAddresses: ["198.19.1.2", "fd00::2"],
  });
});

Deno.test("setUpDevCerts() gives the relay its key (0600) and the client only the CA, and keeps the CA", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const options = {
      caDir: `${dir}/ca`,
      relayDir: `${dir}/relay`,
      clientDir: `${dir}/client`,
      names: ["relay"],
    };
    assertEquals(await setUpDevCerts(options), { created: true });
    const list = (path: string) => [...Deno.readDirSync(path)].map((e) => e.name).sort();
    assertEquals(list(options.relayDir), ["server-key.pem", "server.pem"]);
    assertEquals(list(options.clientDir), ["ca.pem"]);
    assertEquals((await Deno.stat(`${options.relayDir}/server-key.pem`)).mode! & 0o777, 0o600);
    assertEquals((await Deno.stat(`${options.caDir}/ca-key.pem`)).mode! & 0o777, 0o600);
    const ca = await Deno.readTextFile(`${options.clientDir}/ca.pem`);
    assert(ca.startsWith("-----BEGIN CERTIFICATE-----"));
    // A second run (compose up again) reuses the CA the client already trusts.
    assertEquals(await setUpDevCerts(options), { created: false });
    assertEquals(await Deno.readTextFile(`${options.clientDir}/ca.pem`), ca);
    await assertRejects(
      () => setUpDevCerts({ ...options, names: [] }),
      Error,
      "Cannot issue a certificate: give --name",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
