import { assertEquals } from "../tests/support/assert.ts";
import {
  errorMessage,
  H3_DATAGRAM_ERROR,
  H3_MESSAGE_ERROR,
  H3_NO_ERROR,
  H3_VERSION_FALLBACK,
  h3ErrorName,
  QPACK_DECODER_STREAM_ERROR,
} from "./errors.ts";

Deno.test("h3ErrorName() names the codes of RFC 9114, RFC 9204 and RFC 9297 with their value", async (t) => {
  await t.step("first and last of RFC 9114 §8.1", () => {
    assertEquals(h3ErrorName(H3_NO_ERROR), "H3_NO_ERROR (0x100)");
    assertEquals(h3ErrorName(H3_VERSION_FALLBACK), "H3_VERSION_FALLBACK (0x110)");
  });
  await t.step("a stream reset code seen from a real peer (ngtcp2)", () => {
    assertEquals(h3ErrorName(0x10e), "H3_MESSAGE_ERROR (0x10e)");
    assertEquals(h3ErrorName(H3_MESSAGE_ERROR), "H3_MESSAGE_ERROR (0x10e)");
  });
  await t.step("QPACK (RFC 9204 §6) and datagram (RFC 9297 §5.2) codes", () => {
    assertEquals(h3ErrorName(QPACK_DECODER_STREAM_ERROR), "QPACK_DECODER_STREAM_ERROR (0x202)");
    assertEquals(h3ErrorName(H3_DATAGRAM_ERROR), "H3_DATAGRAM_ERROR (0x33)");
  });
  await t.step("every code from 0x100 to 0x110 has a name", () => {
    for (let code = 0x100; code <= 0x110; code++) {
      assertEquals(h3ErrorName(code).startsWith("H3_"), true, h3ErrorName(code));
    }
  });
});

Deno.test("h3ErrorName() marks codes it does not know as unknown", () => {
  assertEquals(h3ErrorName(0), "error 0x0 (unknown)");
  assertEquals(h3ErrorName(0x111), "error 0x111 (unknown)");
  // 0x1f * 0 + 0x21: the first reserved GREASE code (RFC 9114 §8.1)
  assertEquals(h3ErrorName(0x21), "error 0x21 (unknown)");
});

Deno.test("errorMessage() gives an Error's message and any other thrown value as text", () => {
  assertEquals(
    errorMessage(new RangeError("Cannot parse capsule: length 70000 exceeds limit 65535")),
    "Cannot parse capsule: length 70000 exceeds limit 65535",
  );
  assertEquals(errorMessage("plain string"), "plain string");
  assertEquals(errorMessage(42), "42");
  assertEquals(errorMessage(undefined), "undefined");
});
