import { assertEquals } from "../../tests/support/assert.ts";
import { formatIp, formatPrefix, parseIp, parsePrefix } from "../ip/ip_address.ts";
import { prefixesToRanges, rangeToPrefixes, routesWithin } from "./routes.ts";

const p = parsePrefix;
const names = (list: { version: number; address: Uint8Array; prefixLength: number }[]) =>
  list.map((x) => formatPrefix(x as ReturnType<typeof p>));

Deno.test("prefixesToRanges() sorts by version, merges overlaps and neighbours", () => {
  const ranges = prefixesToRanges([
    p("fd00::/8"),
    p("198.18.1.0/24"),
    p("198.18.0.0/24"),
    p("198.18.0.128/25"),
    p("10.0.0.0/8"),
  ], 17);
  assertEquals(
    ranges.map((r) => `${r.version} ${formatIp(r.start)}-${formatIp(r.end)} ${r.ipProtocol}`),
    [
      "4 10.0.0.0-10.255.255.255 17",
      "4 198.18.0.0-198.18.1.255 17",
      "6 fd00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 17",
    ],
  );
});

Deno.test("rangeToPrefixes() covers a range exactly with the fewest prefixes", () => {
  assertEquals(
    names(rangeToPrefixes(4, parseIp("198.18.0.1")!, parseIp("198.18.0.6")!)),
    ["198.18.0.1/32", "198.18.0.2/31", "198.18.0.4/31", "198.18.0.6/32"],
  );
  assertEquals(names(rangeToPrefixes(4, parseIp("0.0.0.0")!, parseIp("255.255.255.255")!)), [
    "0.0.0.0/0",
  ]);
  assertEquals(names(rangeToPrefixes(6, parseIp("::")!, parseIp("::ffff")!)), ["::/112"]);
});

Deno.test("routesWithin() narrows advertised ranges to the wanted networks", async (t) => {
  const advertised = prefixesToRanges([p("0.0.0.0/0"), p("fd00::/8")]);
  await t.step("wanted inside advertised", () => {
    assertEquals(names(routesWithin(advertised, [p("198.18.1.0/24"), p("fd00:0:0:2::/64")])), [
      "198.18.1.0/24",
      "fd00:0:0:2::/64",
    ]);
  });
  await t.step("wanted partly outside", () => {
    const narrow = prefixesToRanges([p("198.18.1.0/25")]);
    assertEquals(names(routesWithin(narrow, [p("198.18.0.0/15"), p("fd00::/8")])), [
      "198.18.1.0/25",
    ]);
  });
  await t.step("nothing wanted takes everything advertised", () => {
    assertEquals(names(routesWithin(advertised, [])), ["0.0.0.0/0", "fd00::/8"]);
  });
});
