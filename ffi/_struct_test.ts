// Byte-exact expectations below are for a little-endian host (x86_64, aarch64):
// netlink and ioctl structs use host byte order, IP addresses network order.
// Each line of a hex() call is one struct field.
import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import { fuzz } from "../tests/support/bytes.ts";
import { PrefixError } from "./_address.ts";
import {
  checkInterfaceName,
  decodeIfreqInt,
  decodeIfreqName,
  encodeAddAddressRequest,
  encodeDeleteAddressRequest,
  encodeDeleteLinkRequest,
  encodeIfreq,
  encodeNetlinkMessage,
  encodePollfds,
  encodeRtattr,
  encodeSetLinkMtuRequest,
  encodeSetLinkTxQueueLengthRequest,
  encodeSetLinkUpRequest,
  encodeSockaddrNl,
  HOST_LITTLE_ENDIAN,
  IFF_NO_PI,
  IFF_TUN,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_ERROR,
  parseNetlinkAck,
  parseNetlinkMessages,
  parseRtattrs,
  pollRevents,
  StructError,
} from "./_struct.ts";

/** Bytes from hex strings ("2c 00 00 00") and ASCII text written as 'text'. */
function hex(...fields: string[]): Uint8Array {
  const out: number[] = [];
  for (const field of fields) {
    if (field.startsWith("'")) {
      out.push(...new TextEncoder().encode(field.slice(1, -1)));
      continue;
    }
    for (const byte of field.split(/\s+/).filter(Boolean)) out.push(parseInt(byte, 16));
  }
  return new Uint8Array(out);
}
const zeros = (n: number) => "00 ".repeat(n);
const FD00_1 = "fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01";

Deno.test("struct tests run on a little-endian host", () => {
  assert(HOST_LITTLE_ENDIAN, "expectations in this file assume little-endian byte order");
});

Deno.test("encodeIfreq() packs name and union member", async (t) => {
  await t.step("TUNSETIFF flags (short at offset 16)", () => {
    assertEquals(
      encodeIfreq("mvpn0", { flags: IFF_TUN | IFF_NO_PI }),
      hex(
        "'mvpn0'", // ifr_name
        zeros(11), // NUL padding to IFNAMSIZ (16)
        "01 10", // ifr_flags: IFF_TUN 0x0001 | IFF_NO_PI 0x1000
        zeros(22), // rest of the 24-byte union
      ),
    );
  });
  await t.step("int member (ifr_ifindex / ifr_mtu)", () => {
    assertEquals(
      encodeIfreq("eth0", { int: 1400 }),
      hex(
        "'eth0'", // ifr_name
        zeros(12), // padding to 16
        "78 05 00 00", // ifr_mtu: 1400
        zeros(20), // rest of the union
      ),
    );
  });
  await t.step("name only, 15 bytes long", () => {
    const ifreq = encodeIfreq("abcdefghijklmno");
    assertEquals(ifreq.length, 40);
    assertEquals(ifreq[15], 0); // always NUL-terminated
    assertEquals(decodeIfreqName(ifreq), "abcdefghijklmno");
  });
  await t.step("decode what the kernel filled in", () => {
    const ifreq = encodeIfreq("mvpn%d");
    ifreq.set(hex("'mvpn12'", "00 00"), 0);
    ifreq.set(hex("07 00 00 00"), 16);
    assertEquals(decodeIfreqName(ifreq), "mvpn12");
    assertEquals(decodeIfreqInt(ifreq), 7);
  });
  await t.step("short buffer", () => {
    assertThrows(
      () => decodeIfreqInt(new Uint8Array(19)),
      StructError,
      "Cannot parse ifreq: 19 bytes, need 20",
    );
  });
});

Deno.test("checkInterfaceName() rejects names the kernel would refuse", async (t) => {
  const separators = "it contains '/', ':', NUL or whitespace";
  const bad: [string, string][] = [
    ["", "it is empty"],
    ["abcdefghijklmnop", "it is 16 bytes, longer than 15"],
    [".", "it is reserved"],
    ["..", "it is reserved"],
    ["a/b", separators],
    ["a:b", separators],
    ["a b", separators],
    ["a\0", separators],
  ];
  for (const [name, problem] of bad) {
    await t.step(JSON.stringify(name), () => {
      assertThrows(
        () => checkInterfaceName(name),
        StructError,
        `Cannot use interface name ${JSON.stringify(name)}: ${problem}`,
      );
    });
  }
  await t.step("accepted", () => {
    for (const name of ["mvpn0", "mvpn%d", "a", "abcdefghijklmno", "tun-1_x"]) {
      checkInterfaceName(name);
    }
  });
});

Deno.test("encodeRtattr() pads to 4 bytes and counts only the payload", () => {
  assertEquals(
    encodeRtattr(3, hex("'abcd'", "00")),
    hex(
      "09 00", // rta_len: 4 + 5
      "03 00", // rta_type: 3 (IFLA_IFNAME)
      "'abcd'", // payload
      "00", // NUL of the name
      "00 00 00", // padding to 12
    ),
  );
  assertEquals(encodeRtattr(1, hex()), hex("04 00", "01 00"));
  assertThrows(
    () => encodeRtattr(1, new Uint8Array(65532)),
    StructError,
    "Cannot pack rtattr 1: length 65536 exceeds 65535",
  );
});

Deno.test("encodeNetlinkMessage() writes the header and aligned parts", () => {
  assertEquals(
    encodeNetlinkMessage({ type: 0x1234, flags: 0x0305, seq: 0x01020304, pid: 0xa0b0c0d0 }, [
      hex("ee ee"),
      hex("dd dd dd dd"),
    ]),
    hex(
      "18 00 00 00", // nlmsg_len: 16 + 4 + 4
      "34 12", // nlmsg_type
      "05 03", // nlmsg_flags
      "04 03 02 01", // nlmsg_seq
      "d0 c0 b0 a0", // nlmsg_pid
      "ee ee 00 00", // first part, padded to 4
      "dd dd dd dd", // second part
    ),
  );
});

Deno.test("encodeSetLinkUpRequest() matches `ip link set dev X up`", () => {
  assertEquals(
    encodeSetLinkUpRequest(1, 7),
    hex(
      "20 00 00 00", // nlmsg_len: 16 + ifinfomsg 16
      "10 00", // nlmsg_type: RTM_NEWLINK (16)
      "05 00", // nlmsg_flags: NLM_F_REQUEST | NLM_F_ACK
      "01 00 00 00", // nlmsg_seq
      "00 00 00 00", // nlmsg_pid: the kernel fills it in
      "00", // ifi_family: AF_UNSPEC
      "00", // padding
      "00 00", // ifi_type
      "07 00 00 00", // ifi_index
      "01 00 00 00", // ifi_flags: IFF_UP
      "01 00 00 00", // ifi_change: IFF_UP
    ),
  );
});

Deno.test("encodeSetLinkMtuRequest() carries IFLA_MTU", async (t) => {
  await t.step("bytes", () => {
    assertEquals(
      encodeSetLinkMtuRequest(2, 7, 1400),
      hex(
        "28 00 00 00", // nlmsg_len: 16 + 16 + 8
        "10 00", // RTM_NEWLINK
        "05 00", // NLM_F_REQUEST | NLM_F_ACK
        "02 00 00 00", // seq
        "00 00 00 00", // pid
        "00 00 00 00", // ifi_family, padding, ifi_type
        "07 00 00 00", // ifi_index
        "00 00 00 00", // ifi_flags
        "00 00 00 00", // ifi_change
        "08 00 04 00", // rtattr: len 8, IFLA_MTU (4)
        "78 05 00 00", // 1400
      ),
    );
  });
  await t.step("not a u32", () => {
    assertThrows(
      () => encodeSetLinkMtuRequest(1, 1, -1),
      StructError,
      "Cannot pack MTU -1: not a u32",
    );
  });
});

Deno.test("encodeSetLinkTxQueueLengthRequest() carries IFLA_TXQLEN", () => {
  assertEquals(
    encodeSetLinkTxQueueLengthRequest(3, 7, 2000),
    hex(
      "28 00 00 00", // nlmsg_len: 16 + 16 + 8
      "10 00", // RTM_NEWLINK
      "05 00", // NLM_F_REQUEST | NLM_F_ACK
      "03 00 00 00", // seq
      "00 00 00 00", // pid
      "00 00 00 00", // ifi_family, padding, ifi_type
      "07 00 00 00", // ifi_index
      "00 00 00 00", // ifi_flags
      "00 00 00 00", // ifi_change
      "08 00 0d 00", // rtattr: len 8, IFLA_TXQLEN (13)
      "d0 07 00 00", // 2000
    ),
  );
  assertThrows(
    () => encodeSetLinkTxQueueLengthRequest(1, 1, 1.5),
    StructError,
    "Cannot pack transmit queue length 1.5: not a u32",
  );
});

Deno.test("encodeDeleteLinkRequest() matches `ip link del dev X`", () => {
  assertEquals(
    encodeDeleteLinkRequest(3, 258),
    hex(
      "20 00 00 00", // nlmsg_len
      "11 00", // RTM_DELLINK (17)
      "05 00", // NLM_F_REQUEST | NLM_F_ACK
      "03 00 00 00", // seq
      "00 00 00 00", // pid
      "00 00 00 00", // family, padding, type
      "02 01 00 00", // ifi_index 258
      "00 00 00 00", // ifi_flags
      "00 00 00 00", // ifi_change
    ),
  );
});

Deno.test("encodeAddAddressRequest() matches `ip addr add`", async (t) => {
  await t.step("IPv4 198.18.2.1/24", () => {
    const address = new Uint8Array([198, 18, 2, 1]);
    assertEquals(
      encodeAddAddressRequest(4, 7, { version: 4, address, prefixLength: 24 }),
      hex(
        "28 00 00 00", // nlmsg_len: 16 + ifaddrmsg 8 + 2 x 8
        "14 00", // RTM_NEWADDR (20)
        "05 06", // REQUEST | ACK | EXCL (0x200) | CREATE (0x400)
        "04 00 00 00", // seq
        "00 00 00 00", // pid
        "02", // ifa_family: AF_INET
        "18", // ifa_prefixlen: 24
        "00", // ifa_flags
        "00", // ifa_scope: RT_SCOPE_UNIVERSE
        "07 00 00 00", // ifa_index
        "08 00 02 00", // rtattr: len 8, IFA_LOCAL
        "c6 12 02 01", // 198.18.2.1
        "08 00 01 00", // rtattr: len 8, IFA_ADDRESS
        "c6 12 02 01", // 198.18.2.1
      ),
    );
  });
  await t.step("IPv6 fd00::1/64 without DAD", () => {
    assertEquals(
      encodeAddAddressRequest(5, 7, { version: 6, address: hex(FD00_1), prefixLength: 64 }),
      hex(
        "40 00 00 00", // nlmsg_len: 16 + 8 + 2 x 20
        "14 00", // RTM_NEWADDR
        "05 06", // REQUEST | ACK | EXCL | CREATE
        "05 00 00 00", // seq
        "00 00 00 00", // pid
        "0a", // AF_INET6
        "40", // prefix length 64
        "02", // IFA_F_NODAD
        "00", // scope universe
        "07 00 00 00", // index
        "14 00 02 00", // rtattr: len 20, IFA_LOCAL
        FD00_1,
        "14 00 01 00", // rtattr: len 20, IFA_ADDRESS
        FD00_1,
      ),
    );
  });
  await t.step("invalid prefix", () => {
    assertThrows(
      () =>
        encodeAddAddressRequest(1, 1, { version: 4, address: hex("01 02 03"), prefixLength: 8 }),
      PrefixError,
      "Cannot pack address: IPv4 address has 3 bytes, expected 4",
    );
  });
});

Deno.test("encodeSockaddrNl() and encodePollfds() lay out their fields", () => {
  assertEquals(
    encodeSockaddrNl(0x1234, 1),
    hex(
      "10 00", // nl_family: AF_NETLINK (16)
      "00 00", // nl_pad
      "34 12 00 00", // nl_pid
      "01 00 00 00", // nl_groups
    ),
  );
  const pollfds = encodePollfds([5, 300], 1);
  assertEquals(
    pollfds,
    hex(
      "05 00 00 00", // fd 5
      "01 00", // events: POLLIN
      "00 00", // revents
      "2c 01 00 00", // fd 300
      "01 00", // events: POLLIN
      "00 00", // revents
    ),
  );
  pollfds[14] = 0x19; // the kernel sets revents of entry 1: POLLIN | POLLERR | POLLHUP
  assertEquals(pollRevents(pollfds, 1), 0x19);
  assertEquals(pollRevents(pollfds, 0), 0);
});

/** A success ack as the kernel sends it with NETLINK_CAP_ACK (header of the request only). */
const ACK_OK = hex(
  "24 00 00 00", // nlmsg_len: 16 + 4 + 16
  "02 00", // NLMSG_ERROR
  "00 01", // NLM_F_CAPPED
  "05 00 00 00", // seq 5
  "d2 04 00 00", // pid 1234 (our port)
  "00 00 00 00", // error 0: success
  "2c 00 00 00 18 00 05 06 05 00 00 00 00 00 00 00", // the request's nlmsghdr
);

/** EEXIST with an extended-ack message, capped. */
const ACK_EEXIST_TLV = hex(
  "38 00 00 00", // nlmsg_len: 16 + 4 + 16 + 20
  "02 00", // NLMSG_ERROR
  "00 03", // NLM_F_CAPPED | NLM_F_ACK_TLVS
  "06 00 00 00", // seq 6
  "00 00 00 00", // pid
  "ef ff ff ff", // error -17 (EEXIST)
  "2c 00 00 00 18 00 05 06 06 00 00 00 00 00 00 00", // request header
  "11 00 01 00", // rtattr: len 17, NLMSGERR_ATTR_MSG
  "'Route exists'",
  "00", // NUL
  "00 00 00", // padding
);

/** EINVAL with the whole request echoed (no NETLINK_CAP_ACK), then a TLV. */
const ACK_EINVAL_UNCAPPED = hex(
  "30 00 00 00", // nlmsg_len: 16 + 4 + 20 + 8
  "02 00", // NLMSG_ERROR
  "00 02", // NLM_F_ACK_TLVS
  "07 00 00 00", // seq
  "00 00 00 00", // pid
  "ea ff ff ff", // error -22 (EINVAL)
  "14 00 00 00 10 00 05 00 07 00 00 00 00 00 00 00", // request header, nlmsg_len 20
  "aa bb cc dd", // request payload
  "08 00 01 00", // rtattr: len 8, NLMSGERR_ATTR_MSG
  "'bad'",
  "00",
);

Deno.test("parseNetlinkMessages() splits a receive buffer", () => {
  const messages = parseNetlinkMessages(new Uint8Array([...ACK_OK, ...ACK_EEXIST_TLV]));
  assertEquals(messages.length, 2);
  const [first, second] = messages;
  assertEquals(
    { type: first.type, flags: first.flags, seq: first.seq, pid: first.pid },
    { type: NLMSG_ERROR, flags: NLM_F_CAPPED, seq: 5, pid: 1234 },
  );
  assertEquals(first.payload.length, 20);
  assertEquals(second.flags, NLM_F_CAPPED | NLM_F_ACK_TLVS);
  assertEquals(second.seq, 6);
});

Deno.test("parseNetlinkMessages() rejects impossible lengths", async (t) => {
  await t.step("short header", () => {
    assertThrows(
      () => parseNetlinkMessages(ACK_OK.subarray(0, 10)),
      StructError,
      "Cannot parse netlink message: 10 bytes left, shorter than the 16-byte header",
    );
  });
  await t.step("length beyond the buffer", () => {
    assertThrows(
      () => parseNetlinkMessages(ACK_OK.subarray(0, 30)),
      StructError,
      "Cannot parse netlink message: length 36 is outside 16..30",
    );
  });
  await t.step("length below the header", () => {
    const broken = ACK_OK.slice();
    broken[0] = 8;
    assertThrows(() => parseNetlinkMessages(broken), StructError, "length 8 is outside 16..36");
  });
});

Deno.test("parseNetlinkAck() reads the errno and the kernel's message", async (t) => {
  await t.step("success", () => {
    assertEquals(parseNetlinkAck(parseNetlinkMessages(ACK_OK)[0]), { errno: 0 });
  });
  await t.step("EEXIST with text, capped", () => {
    assertEquals(parseNetlinkAck(parseNetlinkMessages(ACK_EEXIST_TLV)[0]), {
      errno: 17,
      message: "Route exists",
    });
  });
  await t.step("EINVAL with text after the echoed request", () => {
    assertEquals(parseNetlinkAck(parseNetlinkMessages(ACK_EINVAL_UNCAPPED)[0]), {
      errno: 22,
      message: "bad",
    });
  });
  await t.step("not an error message", () => {
    const other = ACK_OK.slice();
    other[4] = 3;
    assertThrows(
      () => parseNetlinkAck(parseNetlinkMessages(other)[0]),
      StructError,
      "Cannot parse netlink ack: message type 3 is not 2",
    );
  });
  await t.step("truncated payload", () => {
    const short = ACK_OK.slice(0, 24);
    short[0] = 24;
    assertThrows(
      () => parseNetlinkAck(parseNetlinkMessages(short)[0]),
      StructError,
      "Cannot parse netlink ack: 8 bytes, need 20",
    );
  });
  await t.step("positive error", () => {
    const positive = ACK_OK.slice();
    positive[16] = 1;
    assertThrows(
      () => parseNetlinkAck(parseNetlinkMessages(positive)[0]),
      StructError,
      "Cannot parse netlink ack: error 1 is positive",
    );
  });
  await t.step("echoed request longer than the message", () => {
    const broken = ACK_EINVAL_UNCAPPED.slice();
    broken[20] = 200;
    assertThrows(
      () => parseNetlinkAck(parseNetlinkMessages(broken)[0]),
      StructError,
      "Cannot parse netlink ack: echoed request length 200 is outside 16..28",
    );
  });
});

Deno.test("parseRtattrs() splits attributes and rejects bad lengths", () => {
  const attrs = parseRtattrs(hex(
    "05 00 03 00", // len 5, type 3
    "61 00 00 00", // "a" + padding
    "08 00 04 00", // len 8, type 4
    "01 02 03 04",
  ));
  assertEquals(attrs, [
    { type: 3, payload: hex("61") },
    { type: 4, payload: hex("01 02 03 04") },
  ]);
  assertThrows(
    () => parseRtattrs(hex("03 00 01 00")),
    StructError,
    "Cannot parse rtattr: length 3 is outside 4..4",
  );
  assertThrows(() => parseRtattrs(hex("09 00 01 00 00")), StructError, "length 9 is outside 4..5");
});

Deno.test("netlink parsers only ever throw StructError on random and mutated input", () =>
  fuzz((next) => {
    const seeds = [ACK_OK, ACK_EEXIST_TLV, ACK_EINVAL_UNCAPPED];
    let rejected = 0;
    for (let i = 0; i < 5000; i++) {
      let input: Uint8Array;
      if (i % 2 === 0) {
        input = new Uint8Array(Math.floor(next() * 80));
        for (let j = 0; j < input.length; j++) input[j] = Math.floor(next() * 256);
      } else {
        const seed = seeds[i % seeds.length];
        input = seed.slice(0, Math.max(0, seed.length - Math.floor(next() * 8)));
        for (let k = 0; k < 1 + Math.floor(next() * 4); k++) {
          if (input.length) input[Math.floor(next() * input.length)] = Math.floor(next() * 256);
        }
      }
      try {
        for (const message of parseNetlinkMessages(input)) {
          parseRtattrs(message.payload);
          if (message.type === NLMSG_ERROR) parseNetlinkAck(message);
        }
      } catch (error) {
        if (!(error instanceof StructError)) throw error;
        rejected++;
      }
    }
    assert(rejected > 100, `expected many rejections, got ${rejected}`);
  }, 0x5eed));

Deno.test("encodeDeleteAddressRequest() matches `ip addr del`", () => {
  const address = new Uint8Array([198, 18, 2, 1]);
  assertEquals(
    encodeDeleteAddressRequest(9, 7, { version: 4, address, prefixLength: 32 }),
    hex(
      "28 00 00 00", // nlmsg_len: 16 + ifaddrmsg 8 + 2 x 8
      "15 00", // RTM_DELADDR (21)
      "05 00", // REQUEST | ACK
      "09 00 00 00", // seq
      "00 00 00 00", // pid
      "02", // ifa_family: AF_INET
      "20", // ifa_prefixlen: 32
      "00", // ifa_flags
      "00", // ifa_scope: RT_SCOPE_UNIVERSE
      "07 00 00 00", // ifa_index
      "08 00 02 00", // rtattr: len 8, IFA_LOCAL
      "c6 12 02 01", // 198.18.2.1
      "08 00 01 00", // rtattr: len 8, IFA_ADDRESS
      "c6 12 02 01", // 198.18.2.1
    ),
  );
});
