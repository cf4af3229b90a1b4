import { assert, assertEquals } from "../../tests/support/assert.ts";
import { formatIp, formatPrefix, parsePrefix } from "../ip/ip_address.ts";
import { formatScryptHash } from "./scrypt_hash.ts";
import {
  checkUserAddresses,
  formatRate,
  formatUsersFile,
  isUserName,
  parseRate,
  parseUsersFile,
} from "./users_file.ts";
import type { UserEntry } from "./users_file.ts";

const HASH = formatScryptHash({
  logN: 10,
  r: 8,
  p: 1,
  salt: new Uint8Array(16).fill(7),
  hash: new Uint8Array(32).fill(9),
});

const alice = {
  name: "alice",
  token: { id: "q3Xk0aZB", hash: HASH },
  routes: ["198.18.1.0/24", "fd00:0:0:2::/64"],
  protocols: ["udp", 6, 17],
  maxSessions: 2,
  rate: "50mbit",
  address4: "198.18.100.10",
  address6: "fd00:100::10",
};
const bob = { name: "bob", password: HASH };

const file = (...users: unknown[]) => JSON.stringify({ users });

function users(text: string): readonly UserEntry[] {
  const result = parseUsersFile(text);
  if (!result.ok) throw new Error(result.errors.join("\n"));
  return result.users;
}

Deno.test("parseUsersFile() reads every field, with defaults for the missing ones", () => {
  const [a, b] = users(file(alice, bob));
  assertEquals(a.name, "alice");
  assertEquals(a.token?.id, "q3Xk0aZB");
  assertEquals(a.token?.hashText, HASH);
  assertEquals(a.token?.hash.logN, 10);
  assertEquals(a.password, undefined);
  assertEquals(a.policy.routes?.map(formatPrefix), ["198.18.1.0/24", "fd00:0:0:2::/64"]);
  assertEquals(a.policy.protocols, [6, 17]);
  assertEquals(a.policy.maxSessions, 2);
  assertEquals(a.policy.rateBitsPerSecond, 50_000_000);
  assertEquals(formatIp(a.policy.address4!), "198.18.100.10");
  assertEquals(formatIp(a.policy.address6!), "fd00:100::10");
  assertEquals(b.name, "bob");
  assertEquals(b.password?.hashText, HASH);
  assertEquals(b.policy, { maxSessions: 4 });
  assertEquals(users(file()), []);
});

Deno.test("formatUsersFile() writes what parseUsersFile() reads", () => {
  const first = users(file(alice, bob));
  const text = formatUsersFile(first);
  assertEquals(users(text), first);
  assertEquals(JSON.parse(text).users[1], { name: "bob", password: HASH });
  assertEquals(JSON.parse(text).users[0].protocols, [6, 17]);
  assert(text.endsWith("}\n"));
});

Deno.test("parseUsersFile() names the user and the field of every problem, and loads nothing", async (t) => {
  const cases: [string, string, string[]][] = [
    ["not JSON", "{users: []}", ["not JSON: "]],
    ["no users list", `{"people": []}`, [`the top level must be an object with a "users" list`]],
    ["unknown top-level field", `{"users": [], "groups": []}`, [
      `top-level field "groups" is unknown`,
    ]],
    ["a user that is not an object", file("alice"), [`users[0]: must be an object`]],
    ["a bad name", file({ ...bob, name: "a:b" }), [
      `users[0]: field "name" must be 1..64 letters, digits, '.', '_', '-' or '@', not starting with '-'`,
    ]],
    ["an unknown field", file({ ...bob, rout: [] }), [
      `users[0] "bob": field "rout" is unknown (known: name, token, password, routes, protocols, maxSessions, rate, address4, address6)`,
    ]],
    ["no credential", file({ name: "carol" }), [
      `users[0] "carol": has neither "token" nor "password": it could never log in`,
    ]],
    ["a bad token id", file({ ...alice, token: { id: "short", hash: HASH } }), [
      `users[0] "alice": field "token.id" must be 8 base64url characters`,
    ]],
    ["a token that is not an object", file({ ...alice, token: "x" }), [
      `users[0] "alice": field "token" must be an object with "id" and "hash"`,
    ]],
    ["a bad hash", file({ ...bob, password: "plain text" }), [
      `users[0] "bob": field "password" is not a scrypt hash ($scrypt$ln=N,r=N,p=N$salt$hash)`,
    ]],
    [
      "a bad route and a bad protocol",
      file({ ...alice, routes: ["198.18.0.0/33", 5], protocols: [0] }),
      [
        `users[0] "alice": field "routes[0]": Invalid prefix "198.18.0.0/33": length 33 exceeds 32 bits of an IPv4 address`,
        `users[0] "alice": field "routes[1]": 5 is not text`,
        `users[0] "alice": field "protocols[0]": 0 is not an IP protocol (1..255, tcp, udp, icmp, icmpv6)`,
      ],
    ],
    ["maxSessions zero", file({ ...bob, maxSessions: 0 }), [
      `users[0] "bob": field "maxSessions" must be an integer 1..100000, not 0`,
    ]],
    ["a rate in mbps", file({ ...bob, rate: "10mbps" }), [
      `users[0] "bob": field "rate": "10mbps" is not a rate like 50mbit, 500kbit or 1gbit`,
    ]],
    ["an address of the wrong family", file({ ...bob, address4: "fd00::1" }), [
      `users[0] "bob": field "address4" must be an IPv4 address, not "fd00::1"`,
    ]],
    ["a name twice", file(bob, { ...bob }), [`users[1] "bob": name "bob" is users[0]'s too`]],
    [
      "a token id twice",
      file(alice, { ...alice, name: "al", address4: undefined, address6: undefined }),
      [
        `users[1] "al": field "token.id" is users[0]'s too`,
      ],
    ],
    ["a fixed address twice", file(alice, { ...bob, address4: "198.18.100.10" }), [
      `users[1] "bob": field "address4" 198.18.100.10 is users[0]'s too`,
    ]],
    ["problems in two users", file({ ...bob, maxSessions: "x" }, { name: "dave", token: 1 }), [
      `users[0] "bob": field "maxSessions" must be an integer 1..100000, not "x"`,
      `users[1] "dave": field "token" must be an object with "id" and "hash"`,
    ]],
  ];
  for (const [name, text, expected] of cases) {
    await t.step(name, () => {
      const result = parseUsersFile(text);
      assert(!result.ok, `${name}: loaded`);
      if (name === "not JSON") assert(result.errors[0].startsWith(expected[0]), result.errors[0]);
      else assertEquals(result.errors, expected);
      // No message quotes a hash.
      for (const error of result.errors) assert(!error.includes("$scrypt$ln=10"), error);
    });
  }
});

Deno.test("checkUserAddresses() keeps fixed addresses inside the pools, off reserved addresses", () => {
  const pools = ["198.18.100.0/24", "fd00:100::/64"].map(parsePrefix);
  assertEquals(checkUserAddresses(users(file(alice, bob)), pools), []);
  const bad = users(file(
    { ...bob, name: "a", address4: "198.18.101.5" },
    { ...bob, name: "b", address4: "198.18.100.1" },
    { ...bob, name: "c", address4: "198.18.100.255" },
    { ...bob, name: "d", address6: "fd00:100::" },
  ));
  assertEquals(checkUserAddresses(bad, pools), [
    `users[0] "a": field "address4" 198.18.101.5 is outside the pool 198.18.100.0/24`,
    `users[1] "b": field "address4" 198.18.100.1 is the pool's network, gateway or broadcast address, which no client gets`,
    `users[2] "c": field "address4" 198.18.100.255 is the pool's network, gateway or broadcast address, which no client gets`,
    `users[3] "d": field "address6" fd00:100:: is the pool's network, gateway or broadcast address, which no client gets`,
  ]);
  assertEquals(checkUserAddresses(users(file(alice)), [pools[0]]), [
    `users[0] "alice": field "address6" fd00:100::10: the relay has no IPv6 pool`,
  ]);
});

Deno.test("parseRate() reads decimal units as tc does, formatRate() writes them", () => {
  assertEquals(parseRate("50mbit"), 50_000_000);
  assertEquals(parseRate("1.5gbit"), 1_500_000_000);
  assertEquals(parseRate("500kbit"), 500_000);
  assertEquals(parseRate("64000"), 64_000);
  assertEquals(parseRate("10MBIT"), 10_000_000);
  for (const bad of ["", "mbit", "1.2.3mbit", "-5mbit", "10mbps", "1kbit", "2000gbit", "1e9"]) {
    assert(typeof parseRate(bad) === "string", bad);
  }
  assertEquals(formatRate(50_000_000), "50mbit");
  assertEquals(formatRate(1_500_000_000), "1500mbit");
  assertEquals(formatRate(64_001), "64001bit");
});

Deno.test("isUserName() takes names Basic can carry", () => {
  for (const name of ["alice", "a.b-c_d@example", "A1"]) assert(isUserName(name), name);
  for (const name of ["", "-x", "a:b", "a b", "é", "x".repeat(65)]) assert(!isUserName(name), name);
});
