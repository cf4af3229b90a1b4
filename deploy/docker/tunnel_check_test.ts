import { assertEquals } from "../../tests/support/assert.ts";
import { parsePingSummary } from "./tunnel_check.ts";

Deno.test("parsePingSummary() reads iputils ping's summary line", () => {
  const output = [
    "PING 198.19.2.10 (198.19.2.10) 56(84) bytes of data.",
    "64 bytes from 198.19.2.10: icmp_seq=1 ttl=63 time=0.9 ms",
    "",
    "--- 198.19.2.10 ping statistics ---",
    "3 packets transmitted, 3 received, 0% packet loss, time 402ms",
    "rtt min/avg/max/mdev = 0.512/0.700/0.902/0.160 ms",
  ].join("\n");
  assertEquals(parsePingSummary(output), { sent: 3, received: 3 });
  assertEquals(
    parsePingSummary("3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2003ms"),
    { sent: 3, received: 0 },
  );
  assertEquals(parsePingSummary("ping: connect: Network is unreachable"), undefined);
});
