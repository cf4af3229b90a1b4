import { assert, assertEquals } from "../../tests/support/assert.ts";
import { fuzz, hex, type Random } from "../../tests/support/bytes.ts";
import {
  checksumAdd,
  checksumAdd16,
  checksumAdd32,
  checksumFinish,
  checksumIsValid,
  checksumUpdate16,
  internetChecksum,
  ipPseudoHeaderSum,
  ipv4PseudoHeaderSum,
  ipv6PseudoHeaderSum,
} from "./checksum.ts";

/** A slow, obviously correct reference: sum all words, fold once at the end. */
function referenceChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    sum += (bytes[i] << 8) + (i + 1 < bytes.length ? bytes[i + 1] : 0);
  }
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

function randomBytes(random: Random, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i += 65536) random.fill(bytes.subarray(i, i + 65536));
  return bytes;
}

Deno.test("checksumAdd() reproduces the RFC 1071 §3 numerical example", () => {
  // Bytes 00 01 f2 03 f4 f5 f6 f7: words 0001 + f203 + f4f5 + f6f7 = 2ddf0, folded ddf2.
  const data = hex("0001f203f4f5f6f7");
  assertEquals(checksumAdd(0, data), 0xddf2);
  assertEquals(internetChecksum(data), 0x220d);
});

Deno.test("internetChecksum() of a textbook IPv4 header is b861", async (t) => {
  // 4500 ver/IHL/TOS, 0073 total length 115, 0000 id, 4000 DF, 40 TTL 64, 11 UDP,
  // b861 checksum, c0a80001 192.168.0.1, c0a800c7 192.168.0.199.
  const header = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
  await t.step("the stored checksum verifies", () => assert(checksumIsValid(header)));
  await t.step("zeroing the field and recomputing gives it back", () => {
    const copy = header.slice();
    copy[10] = copy[11] = 0;
    assertEquals(internetChecksum(copy), 0xb861);
  });
  await t.step("a flipped bit is detected", () => {
    const copy = header.slice();
    copy[15] ^= 0x04;
    assert(!checksumIsValid(copy));
  });
});

Deno.test("checksumAdd() pads an odd trailing byte with zero", async (t) => {
  await t.step(
    "one byte 01 sums as word 0100",
    () => assertEquals(checksumAdd(0, hex("01")), 0x0100),
  );
  await t.step("range end splits a word", () => {
    assertEquals(checksumAdd(0, hex("0102 0304"), 1, 4), 0x0203 + 0x0400);
  });
  await t.step(
    "empty range leaves the sum alone",
    () => assertEquals(checksumAdd(0x1234, hex("ff"), 1), 0x1234),
  );
});

Deno.test("checksumAdd() in even pieces equals one pass and the reference", () =>
  fuzz((random) => {
    for (let i = 0; i < 300; i++) {
      const data = randomBytes(random, Math.floor(random() * 3000));
      const split = Math.floor(random() * (data.length + 1)) & ~1;
      const piecewise = checksumFinish(checksumAdd(checksumAdd(0, data, 0, split), data, split));
      assertEquals(piecewise, internetChecksum(data));
      assertEquals(internetChecksum(data), referenceChecksum(data));
    }
  }));

Deno.test("checksumAdd() gives the reference sum at every alignment, offset and length", () =>
  fuzz((random) => {
    // Long spans take the 16-bit word path: check its head, tail and byte
    // order against the reference for buffers that start at odd and even
    // addresses, shared or not, and pieces that start at odd offsets.
    const backing = randomBytes(random, 5000);
    const shared = new Uint8Array(new SharedArrayBuffer(5000));
    shared.set(backing);
    for (let i = 0; i < 400; i++) {
      const source = i % 2 === 0 ? backing : shared;
      const shift = random.int(4);
      const view = source.subarray(shift);
      const start = random.int(200);
      const end = start + random.int(view.length - start);
      const initial = random.int(0x10000);
      let want = initial;
      for (let k = start; k < end; k += 2) {
        want += (view[k] << 8) + (k + 1 < end ? view[k + 1] : 0);
      }
      while (want > 0xffff) want = (want % 0x10000) + Math.floor(want / 0x10000);
      const got = checksumAdd(initial, view, start, end);
      assertEquals(got, want, `shift ${shift} start ${start} end ${end}`);
    }
  }));

Deno.test("checksumAdd() folds correctly on large and all-ones inputs", (t) =>
  fuzz(async (random) => {
    await t.step("65535 bytes of ff", () => {
      const data = new Uint8Array(65535).fill(0xff);
      assertEquals(internetChecksum(data), referenceChecksum(data));
    });
    await t.step("random 200000 bytes", () => {
      const data = randomBytes(random, 200000);
      assertEquals(internetChecksum(data), referenceChecksum(data));
    });
    await t.step("all-zero data gives ffff", () => {
      assertEquals(internetChecksum(new Uint8Array(20)), 0xffff);
    });
  }));

Deno.test("checksumAdd16() and checksumAdd32() add words with end-around carry", () => {
  assertEquals(checksumAdd16(0xffff, 0x0001), 0x0001);
  assertEquals(checksumAdd32(0, 0x12345678), 0x1234 + 0x5678);
  assertEquals(checksumAdd32(0, 0xffffffff), 0xffff);
});

Deno.test("ipv4PseudoHeaderSum() matches a hand-worked UDP checksum", () => {
  // 192.0.2.1 -> 192.0.2.2, UDP 1234 -> 5678, length 12, payload "ping".
  // Pseudo-header words: c000 0201 c000 0202 0011 000c.
  // UDP words: 04d2 162e 000c 0000(checksum) 7069 6e67.
  // Sum 27dfc, folded 7dfe, complement 8201.
  const src = hex("c0000201");
  const dst = hex("c0000202");
  const udp = hex("04d2 162e 000c 0000 7069 6e67");
  const pseudo = ipv4PseudoHeaderSum(src, dst, 17, udp.length);
  assertEquals(pseudo, 0xc000 + 0x0201 + 0xc000 + 0x0202 + 0x0011 + 0x000c - 0xffff);
  assertEquals(checksumFinish(checksumAdd(pseudo, udp)), 0x8201);
  udp[6] = 0x82;
  udp[7] = 0x01;
  assert(checksumIsValid(udp, 0, udp.length, pseudo));
});

Deno.test("ipv6PseudoHeaderSum() matches a hand-worked sum", () => {
  // fd00::1 -> fd00::2, length 8 as 32 bits (0000 0008), zero bytes, next header 58 (003a).
  // fd00 + 0001 + fd00 + 0002 + 0008 + 003a = 1fa45, folded fa46.
  const sum = ipv6PseudoHeaderSum(
    hex("fd000000000000000000000000000001"),
    hex("fd000000000000000000000000000002"),
    58,
    8,
  );
  assertEquals(sum, 0xfa46);
});

Deno.test("ipPseudoHeaderSum() reads the addresses in place", (t) =>
  fuzz(async (random) => {
    await t.step("IPv4", () => {
      const header = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
      assertEquals(
        ipPseudoHeaderSum(header, 17, 95),
        ipv4PseudoHeaderSum(header.subarray(12, 16), header.subarray(16, 20), 17, 95),
      );
    });
    await t.step("IPv6 with a length above 16 bits", () => {
      const header = randomBytes(random, 40);
      header[0] = 0x60;
      assertEquals(
        ipPseudoHeaderSum(header, 58, 0x12345),
        ipv6PseudoHeaderSum(header.subarray(8, 24), header.subarray(24, 40), 58, 0x12345),
      );
    });
  }));

Deno.test("checksumUpdate16() follows RFC 1624", (t) =>
  fuzz(async (random) => {
    await t.step("§4 example: HC dd2f, m 5555 -> m' 3285 gives 0000", () => {
      assertEquals(checksumUpdate16(0xdd2f, 0x5555, 0x3285), 0x0000);
    });
    await t.step("TTL decrement equals a full recompute", () => {
      const header = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
      const updated = checksumUpdate16(0xb861, 0x4011, 0x3f11);
      header[8] = 0x3f;
      header[10] = header[11] = 0;
      assertEquals(updated, internetChecksum(header));
    });
    await t.step("random words", () => {
      for (let i = 0; i < 1000; i++) {
        const data = randomBytes(random, 20);
        const before = internetChecksum(data);
        const oldWord = (data[6] << 8) | data[7];
        const newWord = Math.floor(random() * 0x10000);
        data[6] = newWord >> 8;
        data[7] = newWord & 0xff;
        const after = checksumUpdate16(before, oldWord, newWord);
        const full = internetChecksum(data);
        // RFC 1624 §3: both forms of zero verify, so 0000 and ffff are interchangeable.
        assert(after === full || (after ^ full) === 0xffff, `${after} vs ${full}`);
      }
    });
  }));
