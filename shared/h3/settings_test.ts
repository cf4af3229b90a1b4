import { assert, assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { fuzz, hex } from "../../tests/support/bytes.ts";
import { H3_FRAME_ERROR, H3_SETTINGS_ERROR, H3Error } from "../errors.ts";
import { FRAME_SETTINGS, FrameReader } from "./frame.ts";
import {
  clientSettings,
  encodeSettingsFrame,
  parseSettingsPayload,
  serverSettings,
  SETTINGS_ENABLE_CONNECT_PROTOCOL,
  SETTINGS_H3_DATAGRAM,
  SETTINGS_MAX_FIELD_SECTION_SIZE,
  SETTINGS_QPACK_BLOCKED_STREAMS,
  SETTINGS_QPACK_MAX_TABLE_CAPACITY,
} from "./settings.ts";

/** Reads one whole SETTINGS frame with FrameReader and returns its payload. */
const settingsPayload = (frame: Uint8Array) => {
  const reader = new FrameReader();
  reader.push(frame);
  const event = reader.next();
  assert(event?.kind === "frame" && event.type === FRAME_SETTINGS, "not a SETTINGS frame");
  assertEquals(reader.next(), undefined);
  assert(reader.atFrameBoundary, "bytes after the SETTINGS frame");
  return event.payload;
};

const isGreaseId = (id: number) => id >= 0x21 && (id - 0x21) % 0x1f === 0;

Deno.test("setting identifiers match RFC 9114 §7.2.4.1, RFC 9204 §5, RFC 9220 §3, RFC 9297 §2.1.1", () => {
  assertEquals(
    [
      SETTINGS_QPACK_MAX_TABLE_CAPACITY,
      SETTINGS_MAX_FIELD_SECTION_SIZE,
      SETTINGS_QPACK_BLOCKED_STREAMS,
      SETTINGS_ENABLE_CONNECT_PROTOCOL,
      SETTINGS_H3_DATAGRAM,
    ],
    [0x01, 0x06, 0x07, 0x08, 0x33],
  );
});

Deno.test("parseSettingsPayload() reads hand-written pairs", async (t) => {
  await t.step("SETTINGS frame 04 04 33 01 08 01", () => {
    // 04 SETTINGS type, 04 length, 33 H3_DATAGRAM = 01, 08 ENABLE_CONNECT_PROTOCOL = 01
    const payload = settingsPayload(hex("04 04 3301 0801"));
    assertEquals(
      parseSettingsPayload(payload),
      new Map([[SETTINGS_H3_DATAGRAM, 1], [SETTINGS_ENABLE_CONNECT_PROTOCOL, 1]]),
    );
  });
  await t.step("QPACK zeros, a 2-byte field section size, a GREASE setting", () => {
    const payload = hex(
      "01 00" + // QPACK_MAX_TABLE_CAPACITY = 0
        "07 00" + // QPACK_BLOCKED_STREAMS = 0
        "06 4400" + // MAX_FIELD_SECTION_SIZE = 0x0400 (1024), 2-byte varint
        "4b26 802a0000", // reserved 0x0b26 (0x1f*91+0x21) = 0x2a0000, 4-byte varint
    );
    assertEquals(
      parseSettingsPayload(payload),
      new Map([
        [SETTINGS_QPACK_MAX_TABLE_CAPACITY, 0],
        [SETTINGS_QPACK_BLOCKED_STREAMS, 0],
        [SETTINGS_MAX_FIELD_SECTION_SIZE, 1024],
        [0x0b26, 0x2a0000],
      ]),
    );
    assert(isGreaseId(0x0b26));
  });
  await t.step("non-minimal encodings: 4033 = H3_DATAGRAM, 80000001 = 1", () => {
    assertEquals(parseSettingsPayload(hex("4033 80000001")), new Map([[SETTINGS_H3_DATAGRAM, 1]]));
  });
  await t.step("an empty payload is no settings", () => {
    assertEquals(parseSettingsPayload(new Uint8Array(0)), new Map());
  });
  await t.step("0x00 and boolean settings with 0 are kept", () => {
    assertEquals(
      parseSettingsPayload(hex("00 05  08 00  33 00")),
      new Map([[0x00, 5], [SETTINGS_ENABLE_CONNECT_PROTOCOL, 0], [SETTINGS_H3_DATAGRAM, 0]]),
    );
  });
  await t.step("values above 2^53 are kept, lossy", () => {
    // 2a unknown id, ffffffffffffffff value 2^62-1
    assertEquals(parseSettingsPayload(hex("2a ffffffffffffffff")), new Map([[0x2a, 2 ** 62]]));
  });
  await t.step("distinct identifiers above 2^53 are not duplicates", () => {
    // 2^62-1 and 2^62-2 both round to 2^62 as numbers; both are unknown and dropped into one key
    const settings = parseSettingsPayload(hex("ffffffffffffffff 01  fffffffffffffffe 02"));
    assertEquals(settings, new Map([[2 ** 62, 2]]));
  });
});

Deno.test("parseSettingsPayload() rejects duplicate identifiers", async (t) => {
  const cases: Array<[string, string, string]> = [
    ["H3_DATAGRAM twice", "3301 3301", "Cannot parse SETTINGS: duplicate setting 0x33"],
    ["second one non-minimal", "3301 403300", "Cannot parse SETTINGS: duplicate setting 0x33"],
    ["unknown 0x2a", "2a00 0100 2a05", "Cannot parse SETTINGS: duplicate setting 0x2a"],
    [
      "identifier 2^62-1",
      "ffffffffffffffff 00 ffffffffffffffff 00",
      "Cannot parse SETTINGS: duplicate setting 0x3fffffffffffffff",
    ],
  ];
  for (const [name, bytes, message] of cases) {
    await t.step(name, () => {
      const e = assertThrows(() => parseSettingsPayload(hex(bytes)), H3Error, message);
      assertEquals(e.message, message);
      assertEquals(e.code, H3_SETTINGS_ERROR);
      assert(e.connection);
    });
  }
});

Deno.test("parseSettingsPayload() rejects HTTP/2-only identifiers 0x02..0x05", async (t) => {
  for (const id of ["02", "03", "04", "05"]) {
    await t.step(`0x${id}`, () => {
      const message = `Cannot parse SETTINGS: HTTP/2 setting 0x${id} is not allowed in HTTP/3`;
      const e = assertThrows(() => parseSettingsPayload(hex(`3301 ${id}00`)), H3Error, message);
      assertEquals(e.message, message);
      assertEquals(e.code, H3_SETTINGS_ERROR);
    });
  }
});

Deno.test("parseSettingsPayload() rejects boolean settings other than 0 or 1", async (t) => {
  const cases: Array<[string, string]> = [
    ["08 02", "Cannot parse SETTINGS: SETTINGS_ENABLE_CONNECT_PROTOCOL value 2 must be 0 or 1"],
    ["33 02", "Cannot parse SETTINGS: SETTINGS_H3_DATAGRAM value 2 must be 0 or 1"],
    ["33 3f", "Cannot parse SETTINGS: SETTINGS_H3_DATAGRAM value 63 must be 0 or 1"],
    [
      "08 c000000100000000",
      "Cannot parse SETTINGS: SETTINGS_ENABLE_CONNECT_PROTOCOL value 4294967296 must be 0 or 1",
    ],
    [
      "33 ffffffffffffffff",
      "Cannot parse SETTINGS: SETTINGS_H3_DATAGRAM value 4611686018427387903 must be 0 or 1",
    ],
  ];
  for (const [bytes, message] of cases) {
    await t.step(bytes, () => {
      const e = assertThrows(() => parseSettingsPayload(hex(bytes)), H3Error, message);
      assertEquals(e.message, message);
      assertEquals(e.code, H3_SETTINGS_ERROR);
    });
  }
});

Deno.test("parseSettingsPayload() rejects a truncated pair with H3_FRAME_ERROR", async (t) => {
  const cases: Array<[string, string, string]> = [
    [
      "identifier without a value",
      "3301 06",
      "Cannot parse SETTINGS: value at offset 3 is truncated (payload is 3 bytes)",
    ],
    [
      "identifier cut inside its varint",
      "3301 40",
      "Cannot parse SETTINGS: identifier at offset 2 is truncated (payload is 3 bytes)",
    ],
    [
      "value cut inside its varint",
      "06 800000",
      "Cannot parse SETTINGS: value at offset 1 is truncated (payload is 4 bytes)",
    ],
  ];
  for (const [name, bytes, message] of cases) {
    await t.step(name, () => {
      const e = assertThrows(() => parseSettingsPayload(hex(bytes)), H3Error, message);
      assertEquals(e.message, message);
      assertEquals(e.code, H3_FRAME_ERROR);
    });
  }
});

Deno.test("encodeSettingsFrame() writes a whole SETTINGS frame", async (t) => {
  await t.step("server settings without GREASE, byte for byte", () => {
    assertEquals(
      encodeSettingsFrame(serverSettings(), { grease: false }),
      hex(
        "04 08" + // SETTINGS type, length 8
          "01 00" + // QPACK_MAX_TABLE_CAPACITY = 0
          "07 00" + // QPACK_BLOCKED_STREAMS = 0
          "08 01" + // ENABLE_CONNECT_PROTOCOL = 1
          "33 01", // H3_DATAGRAM = 1
      ),
    );
  });
  await t.step("2- and 4-byte varints and an empty list", () => {
    // 04 type, 08 length, 06 MAX_FIELD_SECTION_SIZE = 80010000 (65536, 4 bytes), 4040 id 0x40 (2 bytes) = 00
    assertEquals(
      encodeSettingsFrame([[SETTINGS_MAX_FIELD_SECTION_SIZE, 65536], [0x40, 0]], {
        grease: false,
      }),
      hex("04 08 06 80010000 4040 00"),
    );
    assertEquals(encodeSettingsFrame([], { grease: false }), hex("04 00"));
  });
  await t.step("appends one reserved setting with a random identifier and a small value", () => {
    const greaseIds = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const settings = parseSettingsPayload(settingsPayload(encodeSettingsFrame(clientSettings())));
      assertEquals(settings.size, 4);
      const extra = [...settings].filter(([id]) => !clientSettings().has(id));
      assertEquals(extra.length, 1);
      const [id, value] = extra[0];
      assert(isGreaseId(id), `0x${id.toString(16)} is not 0x1f * N + 0x21`);
      assert(Number.isInteger(value) && value >= 0 && value < 256, `value ${value}`);
      for (const [known, v] of clientSettings()) assertEquals(settings.get(known), v);
      greaseIds.add(id);
    }
    assert(greaseIds.size > 100, `only ${greaseIds.size} distinct GREASE identifiers`);
  });
  await t.step("rejects a duplicate identifier", () => {
    assertThrows(
      () => encodeSettingsFrame([[0x33, 1], [0x33, 0]]),
      RangeError,
      "Cannot encode SETTINGS: duplicate setting 0x33",
    );
  });
  await t.step("rejects an HTTP/2-only identifier", () => {
    assertThrows(
      () => encodeSettingsFrame([[0x04, 1]]),
      RangeError,
      "Cannot encode SETTINGS: HTTP/2 setting 0x04 is not allowed",
    );
  });
});

Deno.test("serverSettings() and clientSettings() announce datagrams and no QPACK table", () => {
  assertEquals(
    serverSettings(),
    new Map([
      [SETTINGS_QPACK_MAX_TABLE_CAPACITY, 0],
      [SETTINGS_QPACK_BLOCKED_STREAMS, 0],
      [SETTINGS_ENABLE_CONNECT_PROTOCOL, 1],
      [SETTINGS_H3_DATAGRAM, 1],
    ]),
  );
  assertEquals(
    clientSettings(),
    new Map([
      [SETTINGS_QPACK_MAX_TABLE_CAPACITY, 0],
      [SETTINGS_QPACK_BLOCKED_STREAMS, 0],
      [SETTINGS_H3_DATAGRAM, 1],
    ]),
  );
  const a = serverSettings();
  a.set(SETTINGS_H3_DATAGRAM, 0);
  assertEquals(serverSettings().get(SETTINGS_H3_DATAGRAM), 1);
});

Deno.test("encodeSettingsFrame() and parseSettingsPayload() round trip random settings", () =>
  fuzz((random) => {
    for (let i = 0; i < 500; i++) {
      const settings = new Map<number, number>();
      const count = Math.floor(random() * 10);
      while (settings.size < count) {
        const id = Math.floor(random() ** 4 * 2 ** (random() * 53));
        if (id >= 0x02 && id <= 0x05) continue;
        const value = id === SETTINGS_ENABLE_CONNECT_PROTOCOL || id === SETTINGS_H3_DATAGRAM
          ? Math.floor(random() * 2)
          : Math.floor(random() * 2 ** (random() * 53));
        settings.set(id, value);
      }
      const frame = encodeSettingsFrame(settings, { grease: false });
      assertEquals(parseSettingsPayload(settingsPayload(frame)), settings);
    }
  }, 3));

Deno.test("parseSettingsPayload() fuzz: random and mutated payloads only throw H3Error", () =>
  fuzz((random) => {
    const seeds = [
      hex("3301 0801 0100 0700 06 4400 4b26 802a0000"),
      hex("ffffffffffffffff 00 c000000100000000 c000000100000000"),
      encodeSettingsFrame(serverSettings()).subarray(2),
    ];
    const codes = new Set<number>();
    for (let i = 0; i < 5000; i++) {
      let payload: Uint8Array;
      if (random() < 0.3) {
        payload = Uint8Array.from({ length: Math.floor(random() * 32) }, () => random() * 256);
      } else {
        payload = seeds[Math.floor(random() * seeds.length)].slice();
        const flips = 1 + Math.floor(random() * 3);
        for (let f = 0; f < flips && payload.length > 0; f++) {
          payload[Math.floor(random() * payload.length)] = Math.floor(random() * 256);
        }
        if (random() < 0.3) payload = payload.subarray(0, Math.floor(random() * payload.length));
      }
      try {
        const settings = parseSettingsPayload(payload);
        for (const [id, value] of settings) {
          assert(!(id >= 0x02 && id <= 0x05), `HTTP/2 id 0x${id.toString(16)} accepted`);
          if (id === SETTINGS_ENABLE_CONNECT_PROTOCOL || id === SETTINGS_H3_DATAGRAM) {
            assert(value === 0 || value === 1, `boolean setting with ${value} accepted`);
          }
        }
      } catch (error) {
        if (!(error instanceof H3Error)) throw error;
        codes.add(error.code);
      }
    }
    assertEquals(codes, new Set([H3_FRAME_ERROR, H3_SETTINGS_ERROR]));
  }, 4));
