import { assertEquals, assertRejects } from "../tests/support/assert.ts";
import { decoyFileName, loadDecoy } from "./decoy.ts";

Deno.test("decoyFileName() maps paths inside the site and refuses everything else", () => {
  const cases: [string, string | undefined][] = [
    ["/", "index.html"],
    ["/about.html", "about.html"],
    ["/css/site.css?v=3", "css/site.css"],
    ["/docs/", "docs/index.html"],
    ["/a%20b.txt#top", "a b.txt"],
    ["/../etc/passwd", undefined],
    ["/%2e%2e/etc/passwd", undefined],
    ["/css/../../x", undefined],
    ["/./index.html", undefined],
    ["/.git/config", undefined],
    ["/.env", undefined],
    ["/a//b", undefined],
    ["/a%00.html", undefined],
    ["/a%5c..%5cb", undefined],
    ["/%E0%A4%A", undefined],
    ["relative.html", undefined],
    ["*", undefined],
    ["/" + "a".repeat(1024), undefined],
  ];
  for (const [path, expected] of cases) assertEquals(decoyFileName(path), expected, path);
});

Deno.test("loadDecoy() refuses a directory that is not there, naming it", async () => {
  await assertRejects(
    () => loadDecoy("/nonexistent/masque-decoy"),
    Error,
    "Cannot use --decoy /nonexistent/masque-decoy:",
  );
  const file = await Deno.makeTempFile();
  try {
    await assertRejects(() => loadDecoy(file), Error, "not a directory");
  } finally {
    await Deno.remove(file);
  }
});
