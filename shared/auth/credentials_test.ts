import { assert, assertEquals, assertStrictEquals } from "../../tests/support/assert.ts";
import { fuzz } from "../../tests/support/bytes.ts";
import {
  basicField,
  bearerField,
  constantTimeEqual,
  decodeB64,
  decodeBase64,
  decodeBase64Url,
  encodeB64,
  encodeBase64,
  encodeBase64Url,
  generateToken,
  MAX_CREDENTIAL_LENGTH,
  parseCredentials,
  parseCredentialValue,
  parseToken,
} from "./credentials.ts";

const TOKEN = "q3Xk0aZB.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";

Deno.test("base64 codecs match RFC 4648 §10's test vectors", () => {
  const vectors = ["", "f", "fo", "foo", "foob", "fooba", "foobar"];
  const padded = ["", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"];
  vectors.forEach((text, i) => {
    const bytes = new TextEncoder().encode(text);
    assertEquals(encodeBase64(bytes), padded[i]);
    assertEquals(decodeBase64(padded[i]), bytes);
    const bare = padded[i].replace(/=+$/, "");
    assertEquals(encodeB64(bytes), bare);
    assertEquals(decodeB64(bare), bytes);
    assertEquals(encodeBase64Url(bytes), bare);
    assertEquals(decodeBase64Url(bare), bytes);
  });
  // The two alphabets differ in the last two characters.
  const high = new Uint8Array([0xfb, 0xff]);
  assertEquals(encodeBase64(high), "+/8=");
  assertEquals(encodeBase64Url(high), "-_8");
});

Deno.test("base64 decoders refuse what is not canonical base64", async (t) => {
  for (const bad of ["Zg=", "Zg", "Z===", "Zm9v!", "Zh==", "=Zg=", "Zm 9v"]) {
    await t.step(`padded "${bad}"`, () => assertStrictEquals(decodeBase64(bad), undefined));
  }
  for (const bad of ["Z", "Zg==", "Zh", "+/8", "ab.c"]) {
    await t.step(`base64url "${bad}"`, () => assertStrictEquals(decodeBase64Url(bad), undefined));
  }
});

Deno.test("parseCredentials() reads Bearer tokens and Basic from proxy-authorization or authorization", async (t) => {
  await t.step("Bearer in proxy-authorization", () => {
    assertEquals(parseCredentials([["proxy-authorization", `Bearer ${TOKEN}`]]), {
      kind: "bearer",
      id: "q3Xk0aZB",
      secret: "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde",
    });
  });
  await t.step("the scheme is case-insensitive, spaces around are ignored", () => {
    const c = parseCredentials([["authorization", `  bEaReR \t${TOKEN}  `]]);
    assertEquals(c.kind, "bearer");
  });
  await t.step("proxy-authorization wins over authorization", () => {
    const c = parseCredentials([
      ["authorization", "Basic YWxpY2U6cHc="],
      ["proxy-authorization", `Bearer ${TOKEN}`],
    ]);
    assertEquals(c.kind, "bearer");
  });
  await t.step("Basic alice:pw, with a colon in the password and UTF-8", () => {
    // "alice:p:w€" in UTF-8, base64.
    const value = encodeBase64(new TextEncoder().encode("alice:p:w€"));
    assertEquals(parseCredentials([["authorization", `Basic ${value}`]]), {
      kind: "basic",
      user: "alice",
      password: "p:w€",
    });
  });
  await t.step("the client's own fields read back", () => {
    assertEquals(parseCredentials([bearerField(TOKEN)]).kind, "bearer");
    assertEquals(parseCredentials([basicField("bob", "secret")]), {
      kind: "basic",
      user: "bob",
      password: "secret",
    });
  });
  await t.step("no field: none", () => {
    assertEquals(parseCredentials([[":method", "CONNECT"]]), { kind: "none" });
  });
});

Deno.test("parseCredentials() calls broken values malformed without quoting them", async (t) => {
  const cases: [string, [string, string][], string][] = [
    ["another scheme", [["authorization", "Digest abc"]], "unsupported scheme"],
    ["Bearer without a dot", [["authorization", "Bearer " + "a".repeat(52)]], "not a token"],
    ["Bearer too short", [["authorization", "Bearer q3Xk0aZB.short"]], "not a token"],
    ["Bearer with a bad character", [[
      "authorization",
      `Bearer ${TOKEN.slice(0, -1)}+`,
    ]], "not a token"],
    ["Basic not base64", [["authorization", "Basic !!!"]], "not base64"],
    ["Basic without a colon", [["authorization", "Basic YWxpY2U="]], "no user name"],
    ["Basic with an empty user", [["authorization", "Basic OnB3"]], "no user name"],
    ["Basic not UTF-8", [[
      "authorization",
      `Basic ${encodeBase64(new Uint8Array([0x61, 0x3a, 0xff]))}`,
    ]], "not UTF-8"],
    ["a field twice", [["proxy-authorization", "Basic YTpi"], [
      "proxy-authorization",
      "Basic YTpi",
    ]], "twice"],
    ["too long", [["authorization", `Basic ${"A".repeat(MAX_CREDENTIAL_LENGTH)}`]], "longer"],
    ["empty", [["authorization", ""]], "unsupported scheme"],
  ];
  for (const [name, headers, reason] of cases) {
    await t.step(name, () => {
      const c = parseCredentials(headers);
      assert(c.kind === "malformed", `${name}: ${c.kind}`);
      assert(c.reason.includes(reason), c.reason);
      // The reason never repeats the value (it may be a secret).
      const value = headers[0][1];
      if (value.length > 8) assert(!c.reason.includes(value.trim().split(" ").pop()!));
    });
  }
});

Deno.test("parseCredentialValue() never throws on random input", () =>
  fuzz((random) => {
    const alphabet = "Bearer Basic bearer basic.:=+/-_ \tAaZz09é";
    for (let i = 0; i < 5000; i++) {
      let text = "";
      const length = Math.floor(random() * 80);
      for (let j = 0; j < length; j++) text += alphabet[Math.floor(random() * alphabet.length)];
      const c = parseCredentialValue(text);
      assert(["none", "bearer", "basic", "malformed"].includes(c.kind));
    }
  }));

Deno.test("generateToken() makes <8>.<43> base64url tokens that parseToken() splits", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const { token, id, secret } = generateToken();
    assertEquals(token.length, 8 + 1 + 43);
    assertEquals(parseToken(token), { id, secret });
    assertEquals(decodeBase64Url(secret)!.length, 32);
    seen.add(token);
  }
  assertEquals(seen.size, 100);
  // From a given random source, a given token.
  const fixed = generateToken((bytes) => bytes.fill(0));
  assertEquals(fixed.token, "AAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
});

Deno.test("constantTimeEqual() compares whole arrays", () => {
  const a = new Uint8Array([1, 2, 3, 4]);
  assert(constantTimeEqual(a, new Uint8Array([1, 2, 3, 4])));
  assert(!constantTimeEqual(a, new Uint8Array([1, 2, 3, 5])));
  assert(!constantTimeEqual(a, new Uint8Array([0, 2, 3, 4])));
  assert(!constantTimeEqual(a, new Uint8Array([1, 2, 3])));
  assert(!constantTimeEqual(a, new Uint8Array([1, 2, 3, 4, 0])));
  assert(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)));
});
