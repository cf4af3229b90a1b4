import { assertThrows } from "../tests/support/assert.ts";
import { checkPrefix, PrefixError } from "./_address.ts";

Deno.test("checkPrefix() accepts valid prefixes and rejects the rest", async (t) => {
  await t.step("valid", () => {
    checkPrefix({ version: 4, address: new Uint8Array(4), prefixLength: 0 }, "Cannot x");
    checkPrefix({ version: 4, address: new Uint8Array(4), prefixLength: 32 }, "Cannot x");
    checkPrefix({ version: 6, address: new Uint8Array(16), prefixLength: 128 }, "Cannot x");
  });
  await t.step("IPv4 length 33", () => {
    assertThrows(
      () =>
        checkPrefix(
          { version: 4, address: new Uint8Array(4), prefixLength: 33 },
          "Cannot add route",
        ),
      PrefixError,
      "Cannot add route: prefix length 33 exceeds 32 for IPv4",
    );
  });
  await t.step("IPv6 length 129", () => {
    assertThrows(
      () => checkPrefix({ version: 6, address: new Uint8Array(16), prefixLength: 129 }, "Cannot x"),
      PrefixError,
      "Cannot x: prefix length 129 exceeds 128 for IPv6",
    );
  });
  await t.step("negative or fractional length", () => {
    assertThrows(
      () => checkPrefix({ version: 4, address: new Uint8Array(4), prefixLength: -1 }, "Cannot x"),
      PrefixError,
      "Cannot x: prefix length -1 is not an integer >= 0",
    );
    assertThrows(
      () => checkPrefix({ version: 4, address: new Uint8Array(4), prefixLength: 1.5 }, "Cannot x"),
      PrefixError,
      "prefix length 1.5 is not an integer",
    );
  });
  await t.step("address of the wrong size", () => {
    assertThrows(
      () => checkPrefix({ version: 6, address: new Uint8Array(4), prefixLength: 8 }, "Cannot x"),
      PrefixError,
      "Cannot x: IPv6 address has 4 bytes, expected 16",
    );
  });
});
