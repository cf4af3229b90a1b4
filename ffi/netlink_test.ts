// Root tests create TUN interfaces named mvt<random> in the current network
// namespace, configure them through netlink.ts and check the result with
// `ip -j`. Every interface is removed in a finally block.
import { assert, assertEquals, assertRejects, assertThrows } from "../tests/support/assert.ts";
import { skipUnlessRoot } from "../tests/support/skip.ts";
import { StructError } from "./_struct.ts";
import {
  forceDeleteLink,
  ipJson,
  IS_ROOT,
  randomSubnet,
  showLink,
  uniqueName,
  v4,
  v6,
} from "./_testing.ts";
import { formatPrefix } from "../shared/ip/ip_address.ts";
import {
  addAddress,
  deleteAddress,
  deleteLink,
  LibcError,
  linkIndex,
  linkMtu,
  localRoutes,
  setLinkMtu,
  setLinkTxQueueLength,
  setLinkUp,
} from "./netlink.ts";
import { openTun, type TunDevice } from "./tun_linux.ts";

const ROOT_ONLY = {
  ...await skipUnlessRoot(IS_ROOT, ["ip", "unshare"]),
  sanitizeOps: true,
  sanitizeResources: true,
};

/** Opens a TUN interface for `body` and always removes it afterwards. */
async function withTun(body: (device: TunDevice) => void | Promise<void>): Promise<void> {
  const device = openTun(uniqueName());
  try {
    await body(device);
  } finally {
    device.close();
    forceDeleteLink(device.name);
  }
}

Deno.test("linkIndex() of a missing link throws ENODEV", () => {
  assertThrows(
    () => linkIndex("mvtmissing0"),
    LibcError,
    "Cannot find link mvtmissing0: No such device (ENODEV)",
  );
  assertThrows(() => linkIndex("a/b"), StructError, 'Cannot use interface name "a/b"');
});

Deno.test("setLinkUp() of a missing link names the link and the errno", () => {
  assertThrows(
    () => setLinkUp("mvtmissing0"),
    LibcError,
    "Cannot set link mvtmissing0 up: No such device (ENODEV)",
  );
});

Deno.test({
  name: "linkIndex() and linkMtu() match what `ip` reports",
  ...ROOT_ONLY,
  fn: () =>
    withTun((device) => {
      const link = showLink(device.name);
      assert(link, `${device.name} should exist`);
      assertEquals(linkIndex(device.name), link.ifindex);
      assertEquals(linkMtu(device.name), link.mtu);
      assertEquals(link.link_type, "none"); // a TUN has no link-layer header
    }),
});

Deno.test({
  name: "setLinkMtu() and setLinkUp() change the link",
  ...ROOT_ONLY,
  fn: () =>
    withTun((device) => {
      setLinkMtu(device.name, 1280);
      setLinkUp(device.name);
      const link = showLink(device.name);
      assert(link);
      assertEquals(link.mtu, 1280);
      assertEquals(linkMtu(device.name), 1280);
      assert(link.flags.includes("UP"), `flags ${link.flags}`);
    }),
});

Deno.test({
  name: "setLinkTxQueueLength() changes the link's transmit queue",
  ...ROOT_ONLY,
  fn: () =>
    withTun((device) => {
      setLinkTxQueueLength(device.name, 2000);
      const [link] = ipJson("link", "show", "dev", device.name) as { txqlen: number }[];
      assertEquals(link.txqlen, 2000);
    }),
});

Deno.test({
  name: "setLinkMtu() reports the kernel's refusal",
  ...ROOT_ONLY,
  fn: () =>
    withTun((device) => {
      assertThrows(
        () => setLinkMtu(device.name, 40), // below the TUN minimum of 68
        LibcError,
        `Cannot set MTU 40 on link ${device.name}: Invalid argument (EINVAL)`,
      );
    }),
});

Deno.test({
  name: "addAddress() assigns IPv4 and IPv6 addresses and refuses duplicates",
  ...ROOT_ONLY,
  fn: () =>
    withTun((device) => {
      const subnet = randomSubnet();
      addAddress(device.name, { version: 4, address: v4(subnet, 1), prefixLength: 24 });
      addAddress(device.name, { version: 6, address: v6(subnet, 1), prefixLength: 64 });
      const link = showLink(device.name);
      assert(link?.addr_info);
      const addresses = link.addr_info.map((a) => `${a.family} ${a.local}/${a.prefixlen}`);
      assert(addresses.includes(`inet 198.19.${subnet}.1/24`), addresses.join(", "));
      const hexSubnet = subnet.toString(16);
      assert(addresses.includes(`inet6 fd00:${hexSubnet}::1/64`), addresses.join(", "));
      assertThrows(
        () => addAddress(device.name, { version: 4, address: v4(subnet, 1), prefixLength: 24 }),
        LibcError,
        `Cannot add address 198.19.${subnet}.1/24 to ${device.name}: File exists (EEXIST)`,
      );
      deleteAddress(device.name, { version: 4, address: v4(subnet, 1), prefixLength: 24 });
      const after = showLink(device.name)?.addr_info?.map((a) => `${a.local}/${a.prefixlen}`);
      assert(!after?.includes(`198.19.${subnet}.1/24`), after?.join(", "));
    }),
});

Deno.test({
  name: "deleteLink() removes the interface and ends the TUN reader",
  ...ROOT_ONLY,
  fn: () =>
    withTun(async (device) => {
      deleteLink(device.name);
      assertEquals(showLink(device.name), null);
      const error = await assertRejects(() => device.readBatch(), LibcError);
      assertEquals(
        error.message,
        `Cannot read from TUN ${device.name}: File descriptor in bad state (EBADFD)`,
      );
      assertEquals(await device.readBatch(), null); // rejected once, then ended
      assertEquals(device.writePacket(new Uint8Array(20)), false);
      assertThrows(
        () => deleteLink(device.name),
        LibcError,
        `Cannot delete link ${device.name}: No such device (ENODEV)`,
      );
    }),
});

/** `ip route show table local` of both families as "type prefix" lines, unicast and multicast left out. */
function ipLocalRoutes(): string[] {
  const lines: string[] = [];
  for (const family of ["-4", "-6"]) {
    const list = ipJson(family, "route", "show", "table", "local");
    assert(Array.isArray(list), `ip ${family} route show table local failed`);
    for (const route of list as { type: string; dst: string }[]) {
      if (!["local", "broadcast", "anycast"].includes(route.type)) continue;
      const dst = route.dst.includes("/")
        ? route.dst
        : `${route.dst}/${route.dst.includes(":") ? 128 : 32}`;
      lines.push(`${route.type} ${dst}`);
    }
  }
  return lines.sort();
}

const describeLocal = () =>
  localRoutes().map((route) => `${route.type} ${formatPrefix(route.prefix)}`).sort();

Deno.test("localRoutes() lists what `ip route show table local` lists", () => {
  // Other programs may change addresses meanwhile: a few tries until both reads agree.
  let ours: string[] = [];
  let theirs: string[] = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    ours = describeLocal();
    theirs = ipLocalRoutes();
    if (ours.join() === theirs.join()) break;
  }
  assertEquals(ours, theirs);
  assert(ours.includes("local 127.0.0.0/8"), ours.join(", "));
});

// Runs in a network namespace of its own (unshare -n), where nothing else changes addresses.
const WATCH_CHILD = `
import { AddressChangeWatch, addAddress, localRoutes, setLinkUp } from "${
  new URL("./netlink.ts", import.meta.url).href
}";
import { openTun } from "${new URL("./tun_linux.ts", import.meta.url).href}";
const steps = {};
const watch = new AddressChangeWatch();
steps.before = watch.changed();
const tun = openTun("mvtwatch0");
steps.afterTun = watch.changed();
steps.quiet = watch.changed();
setLinkUp(tun.name);
watch.changed();
addAddress(tun.name, { version: 4, address: new Uint8Array([198, 19, 7, 1]), prefixLength: 24 });
addAddress(tun.name, {
  version: 6,
  address: new Uint8Array([0xfd, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
  prefixLength: 64,
});
steps.afterAddresses = watch.changed();
steps.drained = watch.changed();
steps.routes = localRoutes().map((r) => r.type + " " + r.prefix.address.join(".") + "/" + r.prefix.prefixLength);
watch.close();
try { watch.changed(); } catch (error) { steps.closed = error.message; }
tun.close();
console.log(JSON.stringify(steps));
`;

Deno.test({
  name: "AddressChangeWatch notices addresses added later, and localRoutes() then lists them",
  ...ROOT_ONLY,
  async fn() {
    const output = await new Deno.Command("unshare", {
      args: ["-n", Deno.execPath(), "eval", "--quiet", WATCH_CHILD],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assertEquals(output.code, 0, stderr);
    const steps = JSON.parse(new TextDecoder().decode(output.stdout));
    assertEquals(steps.before, false, "nothing changed yet");
    assertEquals(steps.afterAddresses, true);
    assertEquals(steps.drained, false, "drained");
    assertEquals(steps.closed, "Cannot read address changes: the watch is closed");
    for (
      const expected of [
        "local 198.19.7.1/32",
        "broadcast 198.19.7.255/32",
        "local 253.0.0.7.0.0.0.0.0.0.0.0.0.0.0.1/128",
      ]
    ) assert(steps.routes.includes(expected), `${expected} missing from ${steps.routes}`);
  },
});
