import { assert, assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { loadUsersFile } from "../../relay/users.ts";
import { setUpDevUser } from "./dev_user.ts";

Deno.test("setUpDevUser() adds the user once, keeps its token, and renews a lost token file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const options = {
      usersFile: `${dir}/relay-users/users.json`,
      tokenFile: `${dir}/client-token/token`,
      user: "demo",
      addOptions: ["--route", "198.19.2.0/24", "--scrypt-ln", "10"],
    };
    assertEquals(await setUpDevUser(options), "added");
    const token = (await Deno.readTextFile(options.tokenFile)).trim();
    assert(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/.test(token), token);
    assertEquals((await Deno.stat(options.tokenFile)).mode! & 0o777, 0o600);
    assertEquals((await Deno.stat(options.usersFile)).mode! & 0o777, 0o600);
    const users = await loadUsersFile(options.usersFile, undefined);
    assertEquals(users.map((u) => u.name), ["demo"]);
    // The file keeps only the hash: the token's secret is not in it.
    const secret = token.slice(token.indexOf(".") + 1);
    assert(!(await Deno.readTextFile(options.usersFile)).includes(secret));
    // compose up again: nothing changes.
    const before = await Deno.readTextFile(options.usersFile);
    assertEquals(await setUpDevUser(options), "kept");
    assertEquals(await Deno.readTextFile(options.usersFile), before);
    assertEquals((await Deno.readTextFile(options.tokenFile)).trim(), token);
    // The client's volume was removed: a new token for the same user.
    await Deno.remove(options.tokenFile);
    assertEquals(await setUpDevUser(options), "new token");
    const renewed = (await Deno.readTextFile(options.tokenFile)).trim();
    assert(renewed !== token);
    assertEquals((await loadUsersFile(options.usersFile, undefined)).length, 1);
    await assertRejects(
      () => setUpDevUser({ ...options, user: "not a name" }),
      Error,
      "is not a user name",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
