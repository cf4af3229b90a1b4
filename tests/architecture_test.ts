// The layering of docs/architecture.md, checked on the import statements of
// every TypeScript file git knows (tests included):
// - shared/ imports neither ffi/, client/ nor relay/;
// - ffi/ imports nothing in shared/ but shared/ip/ (dependency-free, as
//   wireguard-go's tun/ uses net/netip);
// - client/ and relay/ do not import each other;
// - host/ (what both entry points share: cleanup, signals, status file,
//   commands, link bring-up) imports shared/ and ffi/, never client/ or
//   relay/, and nothing in shared/ or ffi/ imports it;
// - code in shared/ (tests aside) names neither the `Deno` global nor `console`
//   outside comments and strings: it reaches the world through what callers
//   pass in.
import { assertEquals } from "./support/assert.ts";

/** One rule broken: `file` imports `target`, or uses `name`, at `line`. */
interface Violation {
  readonly file: string;
  readonly line: number;
  readonly problem: string;
}

const ROOT = new URL("../", import.meta.url);

/** The repository-relative paths of the tracked and new .ts files. */
function sourceFiles(): string[] {
  const output = new Deno.Command("git", {
    args: ["ls-files", "--cached", "--others", "--exclude-standard", "*.ts"],
    cwd: ROOT,
    stdout: "piped",
  }).outputSync();
  const files = new TextDecoder().decode(output.stdout).split("\n").filter((f) => f !== "");
  return files.filter((f) => {
    try {
      return Deno.statSync(new URL(f, ROOT)).isFile;
    } catch {
      return false; // deleted in the working tree
    }
  });
}

/**
 * The relative specifiers `source` imports, with their 1-based line:
 * `import ... from "x"`, `export ... from "x"`, `import("x")` and
 * `new URL("x", import.meta.url)` (workers). Bare specifiers (`node:util`,
 * `npm:x`) are left out.
 */
export function importsOf(source: string): { specifier: string; line: number }[] {
  const found: { specifier: string; line: number }[] = [];
  const patterns = [
    /\bfrom\s*["'](\.{1,2}\/[^"']+)["']/g,
    /\bimport\s*\(\s*["'](\.{1,2}\/[^"']+)["']/g,
    /\bimport\s*["'](\.{1,2}\/[^"']+)["']/g,
    /\bnew URL\(\s*["'](\.{1,2}\/[^"']+)["']\s*,\s*import\.meta\.url/g,
  ];
  for (const pattern of patterns) {
    for (const match of source.matchAll(pattern)) {
      found.push({ specifier: match[1], line: lineAt(source, match.index) });
    }
  }
  return found;
}

/** `source` with comments and string contents blanked (newlines kept), for searching code. */
export function codeOnly(source: string): string {
  let out = "";
  let i = 0;
  while (i < source.length) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      while (i < source.length && source[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end < 0 ? source.length : end + 2;
      out += source.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < source.length && source[j] !== c) j += source[j] === "\\" ? 2 : 1;
      out += c + source.slice(i + 1, j).replace(/[^\n]/g, " ") + c;
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

function lineAt(source: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index; i++) if (source.charCodeAt(i) === 10) line++;
  return line;
}

/** The top folder of a repository path, with shared/ip/ told apart from the rest of shared/. */
function area(path: string): string {
  if (path.startsWith("shared/ip/")) return "shared/ip";
  return path.split("/")[0];
}

/** Every broken rule in `files` (path -> source). */
export function layerViolations(files: ReadonlyMap<string, string>): Violation[] {
  const violations: Violation[] = [];
  for (const [file, source] of files) {
    const from = area(file);
    for (const { specifier, line } of importsOf(source)) {
      const target = new URL(specifier, new URL(file, "file:///repo/")).pathname.slice(6);
      const to = area(target);
      const problem = (from === "shared" || from === "shared/ip") &&
          (to === "ffi" || to === "client" || to === "relay" || to === "host")
        ? `shared/ imports ${to}/`
        : from === "ffi" && (to === "shared" || to === "host")
        ? `ffi/ imports ${to === "host" ? "host/" : "shared/ outside shared/ip/"}`
        : (from === "client" && to === "relay") || (from === "relay" && to === "client")
        ? `${from}/ imports ${to}/`
        : from === "host" && (to === "client" || to === "relay")
        ? `host/ imports ${to}/`
        : undefined;
      if (problem) violations.push({ file, line, problem: `${problem}: ${target}` });
    }
    if ((from === "shared" || from === "shared/ip") && !file.endsWith("_test.ts")) {
      const code = codeOnly(source);
      for (const match of code.matchAll(/(?<![\w.$])(Deno|console)\b/g)) {
        violations.push({
          file,
          line: lineAt(code, match.index),
          problem: `shared/ uses the ${match[1]} global`,
        });
      }
    }
  }
  return violations;
}

Deno.test("the layers import only what docs/architecture.md allows", () => {
  const files = new Map<string, string>();
  for (const file of sourceFiles()) files.set(file, Deno.readTextFileSync(new URL(file, ROOT)));
  const shown = layerViolations(files).map((v) => `${v.file}:${v.line}: ${v.problem}`);
  assertEquals(shown, [], `layer violations:\n${shown.join("\n")}`);
});

Deno.test("layerViolations() catches each forbidden import and global", async (t) => {
  const check = (file: string, source: string) =>
    layerViolations(new Map([[file, source]])).map((v) => `${v.line}: ${v.problem}`);
  await t.step("shared/ importing ffi/, client/ or relay/", () => {
    assertEquals(check("shared/tunnel/x.ts", 'import { openTun } from "../../ffi/tun_linux.ts";'), [
      "1: shared/ imports ffi/: ffi/tun_linux.ts",
    ]);
    assertEquals(check("shared/ip/x.ts", '\nexport { a } from "../../relay/config.ts";'), [
      "2: shared/ imports relay/: relay/config.ts",
    ]);
    assertEquals(check("shared/x.ts", 'const m = await import("../client/main.ts");'), [
      "1: shared/ imports client/: client/main.ts",
    ]);
  });
  await t.step("ffi/ importing shared/ outside shared/ip/", () => {
    assertEquals(
      check("ffi/netlink.ts", 'import type { IpPrefix } from "../shared/ip/ip_address.ts";'),
      [],
    );
    assertEquals(check("ffi/netlink.ts", 'import { Logger } from "../shared/log.ts";'), [
      "1: ffi/ imports shared/ outside shared/ip/: shared/log.ts",
    ]);
  });
  await t.step("client/ and relay/ importing each other; workers count", () => {
    assertEquals(check("client/config.ts", 'import { parseCidr } from "../relay/config.ts";'), [
      "1: client/ imports relay/: relay/config.ts",
    ]);
    assertEquals(
      check("relay/main.ts", 'new Worker(new URL("../client/tunnel.ts", import.meta.url));'),
      ["1: relay/ imports client/: client/tunnel.ts"],
    );
  });
  await t.step("host/ between the entry points and the layers", () => {
    assertEquals(
      check("relay/main.ts", 'import { CleanupStack } from "../host/lifecycle.ts";'),
      [],
    );
    assertEquals(
      check("host/link.ts", 'import { TUN_TX_QUEUE_PACKETS } from "../ffi/tun_linux.ts";'),
      [],
    );
    assertEquals(check("host/x.ts", 'import { Client } from "../client/client.ts";'), [
      "1: host/ imports client/: client/client.ts",
    ]);
    assertEquals(
      check("shared/tunnel/x.ts", 'import { runCommand } from "../../host/command.ts";'),
      [
        "1: shared/ imports host/: host/command.ts",
      ],
    );
    assertEquals(check("ffi/x.ts", 'import { bringUpLink } from "../host/link.ts";'), [
      "1: ffi/ imports host/: host/link.ts",
    ]);
  });
  await t.step("Deno and console in shared/ code, but not in comments, strings or tests", () => {
    const source = [
      "// Deno.exit() is not called here",
      'const text = "console";',
      "/* console.log */ const x = Deno.env.get('A');",
      "console.warn(x);",
      "const y = deps.console; const z = `${text} Deno`;",
    ].join("\n");
    assertEquals(check("shared/x.ts", source), [
      "3: shared/ uses the Deno global",
      "4: shared/ uses the console global",
    ]);
    assertEquals(check("shared/x_test.ts", source), []);
    assertEquals(check("relay/x.ts", source), []);
  });
});
