import { assertEquals, assertStrictEquals, assertThrows } from "../tests/support/assert.ts";
import { encodePollfds, pollRevents } from "./_struct.ts";
import {
  check,
  closeQuietly,
  cString,
  describeErrno,
  EAGAIN,
  EEXIST,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  ENOENT,
  errno,
  errnoName,
  libc,
  LibcError,
  O_RDWR,
  POLLIN,
} from "./libc.ts";

Deno.test("errnoName() names errno values and numbers unknown ones", () => {
  assertEquals(errnoName(ENOENT), "ENOENT");
  assertEquals(errnoName(EEXIST), "EEXIST");
  assertEquals(errnoName(77), "EBADFD");
  assertEquals(errnoName(4095), "errno 4095");
});

Deno.test("describeErrno() pairs glibc's text with the name", () => {
  assertEquals(describeErrno(ENOENT), "No such file or directory (ENOENT)");
  assertEquals(describeErrno(EEXIST), "File exists (EEXIST)");
  assertEquals(describeErrno(19), "No such device (ENODEV)");
});

Deno.test("LibcError carries the errno and reads like a sentence", async (t) => {
  await t.step("plain", () => {
    const error = new LibcError("Cannot open /dev/net/tun", ENOENT);
    assertEquals(error.message, "Cannot open /dev/net/tun: No such file or directory (ENOENT)");
    assertEquals([error.errno, error.code, error.name], [ENOENT, "ENOENT", "LibcError"]);
  });
  await t.step("with the kernel's explanation", () => {
    const error = new LibcError("Cannot add route 198.18.2.1/24 dev mvpn0", 22, "Invalid prefix");
    assertEquals(
      error.message,
      'Cannot add route 198.18.2.1/24 dev mvpn0: Invalid argument (EINVAL), kernel says "Invalid prefix"',
    );
  });
});

Deno.test("cString() appends one NUL", () => {
  assertEquals(cString("/dev"), new Uint8Array([0x2f, 0x64, 0x65, 0x76, 0]));
  assertEquals(cString(""), new Uint8Array([0]));
});

Deno.test("open() of a missing path fails with ENOENT and check() turns it into LibcError", () => {
  const result = libc().open(cString("/nonexistent/masque"), O_RDWR, 0);
  assertStrictEquals(result, -1);
  assertStrictEquals(errno(), ENOENT);
  assertThrows(
    () =>
      check(
        libc().open(cString("/nonexistent/masque"), O_RDWR, 0),
        "Cannot open /nonexistent/masque",
      ),
    LibcError,
    "Cannot open /nonexistent/masque: No such file or directory (ENOENT)",
  );
});

Deno.test("getpid() is this process", () => {
  assertStrictEquals(libc().getpid(), Deno.pid);
});

Deno.test("write(), poll() and read() move a counter through an eventfd", () => {
  const c = libc();
  const fd = check(c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd");
  try {
    const pollfd = encodePollfds([fd], POLLIN);
    assertStrictEquals(c.poll(pollfd, 1n, 0), 0); // nothing to read yet
    assertStrictEquals(c.write(fd, new BigUint64Array([5n]), 8n), 8n);
    assertStrictEquals(c.poll(pollfd, 1n, 0), 1);
    assertStrictEquals(pollRevents(pollfd, 0), POLLIN);
    const counter = new BigUint64Array(1);
    assertStrictEquals(c.read(fd, counter, 8n), 8n);
    assertStrictEquals(counter[0], 5n);
    assertStrictEquals(c.read(fd, counter, 8n), -1n); // drained: would block
    assertStrictEquals(errno(), EAGAIN);
  } finally {
    closeQuietly(fd);
  }
});
