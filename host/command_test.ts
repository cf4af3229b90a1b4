import { assertEquals, assertRejects } from "../tests/support/assert.ts";
import { CommandError, runCommand } from "./command.ts";

const who = { neededBy: "The test", permissionHint: "add --allow-run" };

Deno.test("runCommand() passes stdin and returns stdout", async () => {
  assertEquals(
    await runCommand("cat", [], { ...who, stdin: "table inet x {}\n" }),
    "table inet x {}\n",
  );
});

Deno.test("runCommand() says what failed", async (t) => {
  await t.step("a non-zero exit, with the command's stderr", async () => {
    const error = await assertRejects(
      () => runCommand("sh", ["-c", "echo 'Error: no such table' >&2; exit 1"], who),
      CommandError,
      "sh -c echo 'Error: no such table' >&2; exit 1 failed: Error: no such table",
    );
    assertEquals(error.reason, "failed");
  });
  await t.step("a program that is not installed", async () => {
    const error = await assertRejects(
      () => runCommand("mvpn-no-such-program", [], who),
      CommandError,
      "The test needs mvpn-no-such-program: it is not installed",
    );
    assertEquals(error.reason, "missing");
  });
});
