import { assert, assertEquals } from "../tests/support/assert.ts";
import {
  AUTO_MTU_MAX,
  AUTO_MTU_MIN,
  autoMtu,
  BACKOFF_CAP_MS,
  backoffDelay,
  describeSessionEnd,
} from "./tunnel.ts";

Deno.test("autoMtu() follows the datagram limit between 1280 and 1500", () => {
  assertEquals([AUTO_MTU_MIN, AUTO_MTU_MAX], [1280, 1500]);
  // Before path MTU discovery (Deno's first limit), in between, and on a large path.
  assertEquals([autoMtu(1160), autoMtu(1290), autoMtu(1414), autoMtu(8950)], [
    1280,
    1290,
    1414,
    1500,
  ]);
});

Deno.test("describeSessionEnd() says which side ended the session and why", async (t) => {
  const stats = (packetsOut: number, packetsIn: number) => ({
    packetsOut,
    packetsIn,
    bytesIn: 0,
    bytesOut: 0,
    capsulesIn: 2,
    capsulesOut: packetsOut,
    tooBig: 0,
    unknownContext: 0,
    malformed: 0,
    queueFull: 0,
  });
  const fin = { reason: "closed", message: "peer ended the stream" } as const;
  await t.step("stream mode, our DATAGRAM capsules and a FIN back (connect-ip-go)", () => {
    assertEquals(
      describeSessionEnd(fin, { mode: "stream", stats: stats(1, 0) }),
      "the relay ended the request stream (FIN, no error code) after 1 IP packet from us in " +
        "DATAGRAM capsules and none back: it probably does not accept DATAGRAM capsules " +
        "(RFC 9297 §3.5); try --mode datagram",
    );
  });
  await t.step("a FIN after packets went both ways", () => {
    assertEquals(
      describeSessionEnd(fin, { mode: "stream", stats: stats(5, 5) }),
      "the relay ended the request stream (FIN, no error code)",
    );
    assertEquals(
      describeSessionEnd(fin, { mode: "datagram", stats: stats(3, 0) }),
      "the relay ended the request stream (FIN, no error code)",
    );
  });
  await t.step("an error names its side itself", () => {
    const reset = {
      reason: "error",
      message: "Stream reset by the peer with H3_DATAGRAM_ERROR (0x33)",
    } as const;
    assertEquals(describeSessionEnd(reset, { mode: "stream", stats: stats(1, 0) }), reset.message);
  });
});

Deno.test("backoffDelay() doubles from under a second to a cap of 30 s, with jitter", () => {
  const low = () => 0;
  const high = () => 0.999999;
  const schedule = (random: () => number) =>
    Array.from({ length: 10 }, (_, attempt) => backoffDelay(attempt, random));
  assertEquals(schedule(low), [250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000, 15000]);
  assertEquals(schedule(high), [499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999, 29999]);
  // The first retry comes within a second; no wait ever passes the cap.
  assert(backoffDelay(0) < 1000);
  assert(backoffDelay(1e6) < BACKOFF_CAP_MS);
});
