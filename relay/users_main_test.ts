import { assert, assertEquals, assertMatch } from "../tests/support/assert.ts";
import { isRoot } from "../tests/support/netns.ts";
import { NEEDS_ROOT, RUN_AS_ROOT, skipUnless } from "../tests/support/skip.ts";
import { loadUsersFile } from "./users.ts";
import { runUsers } from "./users_main.ts";

const CHEAP = ["--scrypt-ln", "10"];

Deno.test("deno task users: add prints the token once, list/set/remove, the file stays 0600", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/users.json`;
  try {
    const added = await runUsers(["add", "alice", "--users", file, "--rate", "10mbit", ...CHEAP]);
    assertEquals(added.code, 0, added.err.join("\n"));
    assertEquals(added.out.length, 1);
    const token = added.out[0];
    assertMatch(added.err.join("\n"), /shown once/);
    assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
    assert(!(await Deno.readTextFile(file)).includes(token.slice(token.indexOf(".") + 1)));
    const list = await runUsers(["list", "--users", file]);
    assertEquals(list.code, 0);
    assertMatch(list.out[0], /^alice credentials=token:\S+ .*rate=10mbit/);
    assert(!list.out.join("\n").includes(token));
    const again = await runUsers(["add", "alice", "--users", file, ...CHEAP]);
    assertEquals(again.code, 2);
    assertMatch(again.err[0], /exists/);
    const set = await runUsers(["set", "alice", "--users", file, "--rate", "none"]);
    assertEquals([set.code, set.out], [0, []]);
    assertEquals((await loadUsersFile(file, undefined))[0].policy.rateBitsPerSecond, undefined);
    const removed = await runUsers(["remove", "alice", "--users", file]);
    assertEquals(removed.code, 0);
    assertEquals(await loadUsersFile(file, undefined), []);
    assertEquals((await runUsers(["remove", "alice", "--users", file])).code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "deno task users run as root keeps the file's owner, so a relay running as its user can read it",
  ...skipUnless(isRoot(), NEEDS_ROOT, RUN_AS_ROOT),
  async fn() {
    const dir = await Deno.makeTempDir();
    const file = `${dir}/users.json`;
    try {
      assertEquals((await runUsers(["add", "alice", "--users", file, ...CHEAP])).code, 0);
      await Deno.chown(file, 65534, 65534);
      assertEquals((await runUsers(["add", "bob", "--users", file, ...CHEAP])).code, 0);
      const stat = await Deno.stat(file);
      assertEquals([stat.uid, stat.gid, stat.mode! & 0o777], [65534, 65534, 0o600]);
      assertEquals((await loadUsersFile(file, undefined)).map((u) => u.name), ["alice", "bob"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
