import { assertEquals } from "../tests/support/assert.ts";
import { parseCidr, parseInteger } from "./cli.ts";
import { formatPrefix } from "./ip/ip_address.ts";

Deno.test("parseInteger() accepts decimal integers within bounds and records errors", async (t) => {
  await t.step("within bounds, ends included", () => {
    const errors: string[] = [];
    assertEquals(
      [
        parseInteger("1280", "--mtu", 1280, 65535, errors),
        parseInteger("65535", "--mtu", 1280, 65535, errors),
      ],
      [1280, 65535],
    );
    assertEquals(errors, []);
  });
  for (const text of ["1279", "65536", "-1", "1e3", "0x10", " 1400", "", "14.5"]) {
    await t.step(`refuses ${JSON.stringify(text)}`, () => {
      const errors: string[] = [];
      assertEquals(parseInteger(text, "--mtu", 1280, 65535, errors), undefined);
      assertEquals(errors, [`--mtu must be an integer from 1280 to 65535, not "${text}"`]);
    });
  }
});

Deno.test("parseCidr() reads a prefix, optionally of one version, and records errors", async (t) => {
  await t.step("any version, surrounding space trimmed", () => {
    const errors: string[] = [];
    const prefix = parseCidr(" 198.18.0.1/15 ", "--route", errors);
    assertEquals([prefix && formatPrefix(prefix), errors], ["198.18.0.0/15", []]);
  });
  await t.step("the wrong version", () => {
    const errors: string[] = [];
    assertEquals(parseCidr("fd00::/64", "--pool4", errors, 4), undefined);
    assertEquals(errors, ['--pool4 must be an IPv4 prefix, not "fd00::/64"']);
  });
  await t.step("not a prefix", () => {
    const errors: string[] = [];
    assertEquals(parseCidr("198.18.0.0/33", "--route", errors), undefined);
    assertEquals(errors, [
      '--route: Invalid prefix "198.18.0.0/33": length 33 exceeds 32 bits of an IPv4 address',
    ]);
  });
});
