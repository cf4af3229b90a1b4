import { assertEquals } from "../tests/support/assert.ts";
import { createLogger } from "../shared/log.ts";
import { CleanupStack } from "./lifecycle.ts";

Deno.test("CleanupStack runs steps newest first, 'last' ones at the end, each once, past failures", async () => {
  const lines: string[] = [];
  const cleanups = new CleanupStack(createLogger({ write: (line) => lines.push(line) }));
  const ran: string[] = [];
  cleanups.push(() => void ran.push("close TUN"));
  cleanups.push(() => void ran.push("remove signal listeners"), { last: true });
  cleanups.push(() => {
    throw new Error("nft delete table failed");
  });
  cleanups.push(async () => {
    await Promise.resolve();
    ran.push("delete route");
  });
  await cleanups.run();
  assertEquals(ran, ["delete route", "close TUN", "remove signal listeners"]);
  assertEquals(lines.length, 1);
  assertEquals(lines[0].includes('cleanup step failed error="nft delete table failed"'), true);
  await cleanups.run();
  assertEquals(ran.length, 3);
});
