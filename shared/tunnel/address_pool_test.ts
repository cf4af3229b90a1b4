import { fuzz } from "../../tests/support/bytes.ts";
import {
  assert,
  assertEquals,
  assertStrictEquals,
  assertThrows,
} from "../../tests/support/assert.ts";
import { formatIp, type IpPrefix, parseIp, parsePrefix } from "../ip/ip_address.ts";
import { AddressPool } from "./address_pool.ts";

const ip = (text: string) => parseIp(text)!;

Deno.test("AddressPool reserves network, gateway and broadcast of an IPv4 /24", () => {
  const pool = new AddressPool(parsePrefix("198.18.0.0/24"));
  assertEquals(pool.gateway, ip("198.18.0.1"));
  assertStrictEquals(pool.size, 253); // 256 - network - gateway - broadcast
  const handed: string[] = [];
  for (let address = pool.allocate(); address !== undefined; address = pool.allocate()) {
    handed.push(formatIp(address));
  }
  assertStrictEquals(handed.length, 253);
  assertStrictEquals(handed[0], "198.18.0.2");
  assertStrictEquals(handed[252], "198.18.0.254");
  assertStrictEquals(new Set(handed).size, 253);
  assertStrictEquals(pool.inUse, 253);
});

Deno.test("AddressPool on the smallest prefixes", async (t) => {
  await t.step("IPv4 /30 holds one client", () => {
    const pool = new AddressPool(parsePrefix("198.18.0.4/30"));
    assertStrictEquals(pool.size, 1);
    assertEquals(pool.gateway, ip("198.18.0.5"));
    assertEquals(pool.allocate(), ip("198.18.0.6"));
    assertStrictEquals(pool.allocate(), undefined);
  });
  await t.step("IPv6 /126 holds two clients (no broadcast in IPv6)", () => {
    const pool = new AddressPool(parsePrefix("fd00::/126"));
    assertStrictEquals(pool.size, 2);
    assertEquals(pool.allocate(), ip("fd00::2"));
    assertEquals(pool.allocate(), ip("fd00::3"));
    assertStrictEquals(pool.allocate(), undefined);
  });
});

Deno.test("AddressPool constructor rejects unusable prefixes with clear errors", async (t) => {
  const cases: [string, IpPrefix, string][] = [
    [
      "/31",
      parsePrefix("198.18.0.0/31"),
      "Cannot create address pool: 198.18.0.0/31 leaves no address for clients (need /30 or shorter)",
    ],
    [
      "/32",
      parsePrefix("198.18.0.9"),
      "Cannot create address pool: 198.18.0.9/32 leaves no address for clients (need /30 or shorter)",
    ],
    [
      "/127",
      parsePrefix("fd00::/127"),
      "Cannot create address pool: fd00::/127 leaves no address for clients (need /126 or shorter)",
    ],
    [
      "host bits",
      { version: 4, address: ip("198.18.0.1"), prefixLength: 24 },
      "Cannot create address pool: 198.18.0.1/24 has host bits set",
    ],
    [
      "version mismatch",
      { version: 6, address: ip("198.18.0.0"), prefixLength: 24 },
      "Cannot create address pool: IPv6 prefix with a 4-byte address",
    ],
    [
      "length too long",
      { version: 4, address: ip("198.18.0.0"), prefixLength: 33 },
      "Cannot create address pool: prefix length 33 is outside 0..32",
    ],
  ];
  for (const [name, prefix, message] of cases) {
    await t.step(name, () => {
      const error = assertThrows(() => new AddressPool(prefix), Error);
      assertStrictEquals(error.message, message);
    });
  }
});

Deno.test("AddressPool on an IPv6 /64 allocates without materializing the range", () => {
  const pool = new AddressPool(parsePrefix("fd00:1:2:3::/64"));
  assertStrictEquals(pool.size, 2 ** 64 - 2); // rounds to 2^64 as a double
  assertEquals(pool.gateway, ip("fd00:1:2:3::1"));
  assertEquals(pool.allocate(), ip("fd00:1:2:3::2"));
  for (let i = 0; i < 10000; i++) pool.allocate();
  assertEquals(pool.allocate(), ip("fd00:1:2:3::2713")); // 2 + 10001 = 0x2713
  assertStrictEquals(pool.inUse, 10002);
  assert(pool.release(ip("fd00:1:2:3::2")));
  // A released address is not reused while fresh ones remain.
  assertEquals(pool.allocate(), ip("fd00:1:2:3::2714"));
});

Deno.test("AddressPool reuses released addresses oldest first once the counter runs out", () => {
  const pool = new AddressPool(parsePrefix("198.18.0.0/29")); // clients .2 .. .6
  for (let i = 0; i < 5; i++) pool.allocate();
  assertStrictEquals(pool.allocate(), undefined);
  assert(pool.release(ip("198.18.0.5")));
  assert(pool.release(ip("198.18.0.3")));
  assertStrictEquals(pool.inUse, 3);
  assertEquals(pool.allocate(), ip("198.18.0.5"));
  assertEquals(pool.allocate(), ip("198.18.0.3"));
  assertStrictEquals(pool.allocate(), undefined);
});

Deno.test("AddressPool.release() refuses what it did not hand out", async (t) => {
  const pool = new AddressPool(parsePrefix("198.18.0.0/24"));
  const address = pool.allocate()!;
  const cases: [string, Uint8Array][] = [
    ["an address outside the prefix", ip("198.18.1.2")],
    ["an address of the other version", ip("::ffff:198.18.0.2")],
    ["a 5-byte array", new Uint8Array(5)],
    ["the network address", ip("198.18.0.0")],
    ["the gateway", ip("198.18.0.1")],
    ["the broadcast address", ip("198.18.0.255")],
    ["an address never allocated", ip("198.18.0.77")],
  ];
  for (const [name, candidate] of cases) {
    await t.step(name, () => {
      assertStrictEquals(pool.release(candidate), false);
      assertStrictEquals(pool.inUse, 1);
    });
  }
  await t.step("a double release", () => {
    assertStrictEquals(pool.release(address), true);
    assertStrictEquals(pool.release(address), false);
    assertStrictEquals(pool.inUse, 0);
  });
});

Deno.test("AddressPool.claim() takes a requested address and allocate() skips it", async (t) => {
  const pool = new AddressPool(parsePrefix("198.18.0.0/28"));
  await t.step("claim ahead of the counter", () => {
    assert(pool.claim(ip("198.18.0.3")));
    assert(pool.isInUse(ip("198.18.0.3")));
    assertEquals(pool.allocate(), ip("198.18.0.2"));
    assertEquals(pool.allocate(), ip("198.18.0.4"));
  });
  await t.step("refusals", () => {
    assertStrictEquals(pool.claim(ip("198.18.0.3")), false, "in use");
    assertStrictEquals(pool.claim(ip("198.18.0.1")), false, "gateway");
    assertStrictEquals(pool.claim(ip("198.18.0.15")), false, "broadcast");
    assertStrictEquals(pool.claim(ip("198.18.0.16")), false, "outside");
    assertStrictEquals(pool.claim(ip("fd00::3")), false, "other version");
  });
  await t.step(
    "a claimed address released before the counter reaches it is handed out once",
    () => {
      assert(pool.claim(ip("198.18.0.9")));
      assert(pool.release(ip("198.18.0.9")));
      const handed: string[] = [];
      for (let a = pool.allocate(); a !== undefined; a = pool.allocate()) handed.push(formatIp(a));
      assertEquals(handed, [
        "198.18.0.5",
        "198.18.0.6",
        "198.18.0.7",
        "198.18.0.8",
        "198.18.0.9",
        "198.18.0.10",
        "198.18.0.11",
        "198.18.0.12",
        "198.18.0.13",
        "198.18.0.14",
      ]);
    },
  );
});

Deno.test("AddressPool.setReserved() keeps users' fixed addresses out of allocate(), claim() hands them out", () => {
  const pool = new AddressPool(parsePrefix("198.18.100.0/29")); // clients .2 to .6
  const fixed = ["198.18.100.3", "198.18.100.5"].map((a) => parseIp(a)!);
  // Outside the pool and the gateway are ignored.
  assertEquals(pool.setReserved([...fixed, parseIp("198.18.101.3")!, parseIp("198.18.100.1")!]), 2);
  assertEquals(pool.reserved, 2);
  const handed: string[] = [];
  for (let a = pool.allocate(); a !== undefined; a = pool.allocate()) handed.push(formatIp(a));
  assertEquals(handed, ["198.18.100.2", "198.18.100.4", "198.18.100.6"]);
  assert(pool.claim(fixed[0]));
  assert(!pool.claim(fixed[0]));
  // Released, a fixed address does not go to allocate() either.
  assert(pool.release(fixed[0]));
  assert(pool.release(parseIp("198.18.100.4")!));
  assertEquals(formatIp(pool.allocate()!), "198.18.100.4");
  assertEquals(pool.allocate(), undefined);
  // A new set replaces the old one: .3 is free for anyone now.
  pool.setReserved([fixed[1]]);
  assertEquals(formatIp(pool.allocate()!), "198.18.100.3");
});

Deno.test("AddressPool keeps its invariants under random operations", (t) =>
  fuzz(async (random) => {
    for (const text of ["198.18.0.0/28", "fd00::/124"]) {
      await t.step(text, () => {
        const pool = new AddressPool(parsePrefix(text));
        const prefix = parsePrefix(text);
        const model = new Set<string>();
        const reserved = new Set([formatIp(prefix.address), formatIp(pool.gateway)]);
        if (prefix.version === 4) reserved.add("198.18.0.15");
        for (let i = 0; i < 5000; i++) {
          const r = random();
          if (r < 0.45) {
            const address = pool.allocate();
            if (address === undefined) {
              assertStrictEquals(model.size, pool.size);
            } else {
              const name = formatIp(address);
              assert(!model.has(name), `${name} handed out twice`);
              assert(!reserved.has(name), `${name} is reserved`);
              model.add(name);
            }
          } else {
            // Release or claim a random address in (or just outside) the prefix.
            const candidate = prefix.address.slice();
            candidate[candidate.length - 1] = Math.floor(random() * 18);
            const name = formatIp(candidate);
            if (r < 0.85) {
              assertStrictEquals(pool.release(candidate), model.delete(name), `release ${name}`);
            } else {
              const expected = !model.has(name) && !reserved.has(name) &&
                candidate[candidate.length - 1] < 16;
              assertStrictEquals(pool.claim(candidate), expected, `claim ${name}`);
              if (expected) model.add(name);
            }
          }
          assertStrictEquals(pool.inUse, model.size);
        }
      });
    }
  }));
