import { assert, assertEquals } from "../../tests/support/assert.ts";
import { formatScryptHash, parseScryptHash, scryptMemory } from "./scrypt_hash.ts";

const SALT = new Uint8Array(16).map((_, i) => i);
const HASH = new Uint8Array(32).map((_, i) => 255 - i);

Deno.test("formatScryptHash() writes the PHC string format and parseScryptHash() reads it back", () => {
  const text = formatScryptHash({ logN: 14, r: 8, p: 1, salt: SALT, hash: HASH });
  assertEquals(
    text,
    // ln, r, p; 16 bytes of salt and 32 of hash in base64 without padding.
    "$scrypt$ln=14,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA",
  );
  assertEquals(parseScryptHash(text), { logN: 14, r: 8, p: 1, salt: SALT, hash: HASH });
  // Parameters in another order read the same.
  const reordered = text.replace("ln=14,r=8,p=1", "p=1,ln=14,r=8");
  assertEquals(parseScryptHash(reordered), { logN: 14, r: 8, p: 1, salt: SALT, hash: HASH });
  assertEquals(scryptMemory({ logN: 14, r: 8, p: 1 }), 16 * 1024 * 1024);
});

Deno.test("parseScryptHash() explains what is wrong, never quoting salt or hash", async (t) => {
  const good = formatScryptHash({ logN: 14, r: 8, p: 1, salt: SALT, hash: HASH });
  const cases: [string, string, string][] = [
    ["argon2", good.replace("$scrypt$", "$argon2id$"), "is not a scrypt hash"],
    ["missing part", good.slice(0, good.lastIndexOf("$")), "is not a scrypt hash"],
    ["unknown parameter", good.replace("p=1", "q=1"), "other than ln, r and p"],
    ["parameter twice", good.replace("p=1", "r=8"), "other than ln, r and p"],
    ["ln too large", good.replace("ln=14", "ln=21"), "ln outside 1..20"],
    ["ln with a leading zero", good.replace("ln=14", "ln=014"), "ln outside"],
    ["r zero", good.replace("r=8", "r=0"), "r outside 1..32"],
    ["missing p", good.replace(",p=1", ""), "lacks one of"],
    ["too much memory", good.replace("ln=14,r=8", "ln=20,r=32"), "needs more than 256 MiB"],
    ["salt not base64", good.replace("AAECAwQFBgcICQoLDA0ODw", "AAEC!"), "salt"],
    ["salt too short", good.replace("AAECAwQFBgcICQoLDA0ODw", "AAEC"), "salt"],
    ["hash too short", good.slice(0, good.lastIndexOf("$") + 1) + "AAEC", "hash"],
  ];
  for (const [name, text, expected] of cases) {
    await t.step(name, () => {
      const result = parseScryptHash(text);
      assert(typeof result === "string", `${name}: parsed`);
      assert(result.includes(expected), result);
      assert(!result.includes("AAECAwQ"), result);
    });
  }
});
