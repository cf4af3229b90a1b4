import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import { enlargeUdpBuffers } from "./udp_buffers.ts";

const opts = { permissions: { ffi: true, net: true } } as const;

Deno.test({
  name: "enlargeUdpBuffers() finds the QUIC endpoint's socket by port and grows its buffers",
  ...opts,
  fn() {
    const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
    try {
      const port = endpoint.addr.port;
      const small = enlargeUdpBuffers(port, 65536);
      // Linux doubles the value asked for (bookkeeping overhead).
      assertEquals(small.receiveBytes, 2 * 65536);
      assertEquals(small.sendBytes, 2 * 65536);
      const large = enlargeUdpBuffers(port, 4 * 1024 * 1024);
      assertEquals(large.fd, small.fd);
      // Above net.core.rmem_max only with SO_RCVBUFFORCE (root); never below the small size.
      assert(large.receiveBytes > small.receiveBytes, `receive buffer ${large.receiveBytes}`);
      assert(large.sendBytes > small.sendBytes, `send buffer ${large.sendBytes}`);
    } finally {
      endpoint.close();
    }
  },
});

Deno.test({
  name: "enlargeUdpBuffers() says which port had no socket and refuses bad arguments",
  ...opts,
  fn() {
    // A UDP socket of Deno's own, then closed: its port is free again.
    const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (socket.addr as Deno.NetAddr).port;
    socket.close();
    assertThrows(
      () => enlargeUdpBuffers(port),
      Error,
      `Cannot enlarge UDP buffers: no UDP socket of this process is bound to port ${port}`,
    );
    assertThrows(() => enlargeUdpBuffers(0), RangeError, "port 0 is outside 1..65535");
    assertThrows(() => enlargeUdpBuffers(4433, 100), RangeError, "100 bytes is outside");
  },
});
