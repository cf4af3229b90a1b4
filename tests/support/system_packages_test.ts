import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  aptInstallCommand,
  packageOf,
  packagesFor,
  parseOsRelease,
  planSetup,
  type SetupFacts,
  SYSTEM_PACKAGES,
  usesApt,
} from "./system_packages.ts";

const DEBIAN_12 = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
HOME_URL="https://www.debian.org/"
`;
const UBUNTU_24 = `PRETTY_NAME="Ubuntu 24.04.1 LTS"
ID=ubuntu
ID_LIKE=debian
`;
const MINT = `PRETTY_NAME='Linux Mint 22'\nID=linuxmint\nID_LIKE="ubuntu debian"\n`;
const FEDORA =
  `NAME="Fedora Linux"\nID=fedora\nPRETTY_NAME="Fedora Linux 41 (Workstation Edition)"\n`;

function facts(overrides: Partial<SetupFacts>): SetupFacts {
  return {
    os: parseOsRelease(DEBIAN_12),
    root: true,
    haveApt: true,
    missingCommands: new Set(),
    ...overrides,
  };
}

Deno.test("parseOsRelease() reads ID, ID_LIKE and PRETTY_NAME, quoted or not", () => {
  assertEquals(parseOsRelease(DEBIAN_12), {
    id: "debian",
    idLike: [],
    prettyName: "Debian GNU/Linux 12 (bookworm)",
  });
  assertEquals(parseOsRelease(UBUNTU_24).idLike, ["debian"]);
  assertEquals(parseOsRelease(MINT), {
    id: "linuxmint",
    idLike: ["ubuntu", "debian"],
    prettyName: "Linux Mint 22",
  });
  assertEquals(parseOsRelease('# comment\n\nnot a field\nID="ARCH"\n').id, "arch");
  assertEquals(parseOsRelease("").prettyName, "unknown");
});

Deno.test("usesApt() knows Debian, Ubuntu and their derivatives only", () => {
  assert(usesApt(parseOsRelease(DEBIAN_12)));
  assert(usesApt(parseOsRelease(UBUNTU_24)));
  assert(usesApt(parseOsRelease(MINT)));
  assert(!usesApt(parseOsRelease(FEDORA)));
  assert(!usesApt(parseOsRelease("")));
});

Deno.test("the package table: demo's packages are the test suite's too, each command once", () => {
  const test = new Set(packagesFor("test").map((pkg) => pkg.name));
  for (const pkg of packagesFor("demo")) assert(test.has(pkg.name), `${pkg.name} missing in test`);
  const demo = packagesFor("demo").map((pkg) => pkg.name);
  assertEquals(demo, ["iproute2", "nftables", "iputils-ping", "procps"]);
  const commands = SYSTEM_PACKAGES.flatMap((pkg) => pkg.commands);
  assertEquals(new Set(commands).size, commands.length);
  for (const pkg of SYSTEM_PACKAGES) assert(pkg.why.length > 10, `${pkg.name} says why`);
  assertEquals(packageOf("gtlsserver").name, "ngtcp2-server");
  assertThrows(() => packageOf("emacs"), Error, "No system package in the table provides emacs");
});

Deno.test("planSetup() is ready when nothing the task needs is missing", () => {
  assertEquals(planSetup("test", facts({})), { kind: "ready" });
  // wg is the benchmark's, not the suite's.
  assertEquals(planSetup("test", facts({ missingCommands: new Set(["wg"]) })), {
    kind: "ready",
  });
});

Deno.test("planSetup() installs what is missing with apt, as root on Debian and Ubuntu", () => {
  const missing = new Set(["nft", "ping", "wg", "dockerd"]);
  const plan = planSetup("test", facts({ missingCommands: missing }));
  assertEquals(plan.kind, "install");
  if (plan.kind !== "install") return;
  assertEquals(plan.packages.map((pkg) => pkg.name), ["nftables", "iputils-ping", "docker.io"]);
  assertEquals(
    plan.command,
    "apt-get install -y --no-install-recommends nftables iputils-ping docker.io",
  );
  const demo = planSetup(
    "demo",
    facts({ os: parseOsRelease(UBUNTU_24), missingCommands: missing }),
  );
  assertEquals(
    demo.kind === "install" && demo.command,
    aptInstallCommand(["nftables", "iputils-ping"]),
  );
});

Deno.test("planSetup() stops with the exact command without root", () => {
  const plan = planSetup("demo", facts({ root: false, missingCommands: new Set(["nft"]) }));
  assertEquals(plan, {
    kind: "stop",
    packages: [packageOf("nft")],
    problem: "installing packages needs root",
    command: "sudo apt-get update && sudo apt-get install -y --no-install-recommends nftables",
  });
});

Deno.test("planSetup() stops on a distribution it does not know, naming what to install", () => {
  const plan = planSetup(
    "demo",
    facts({ os: parseOsRelease(FEDORA), missingCommands: new Set(["ping", "sysctl"]) }),
  );
  assertEquals(plan.kind, "stop");
  if (plan.kind !== "stop") return;
  assertEquals(
    plan.problem,
    "Fedora Linux 41 (Workstation Edition) is not Debian or Ubuntu, so the setup cannot install " +
      "packages itself",
  );
  assertEquals(
    plan.command,
    "install with your package manager what provides ping, sysctl (Debian: apt-get install -y " +
      "--no-install-recommends iputils-ping procps)",
  );
  const noOs = planSetup("demo", facts({ os: undefined, missingCommands: new Set(["ping"]) }));
  assert(noOs.kind === "stop" && noOs.problem.startsWith("this system (no /etc/os-release)"));
  const noApt = planSetup("demo", facts({ haveApt: false, missingCommands: new Set(["ping"]) }));
  assert(
    noApt.kind === "stop" && noApt.problem.includes("(apt-get not found)"),
    JSON.stringify(noApt),
  );
});

Deno.test("the README's package table lists the table's packages per task", () => {
  const readme = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));
  const row = (task: string) => {
    const line = readme.split("\n").find((l) => l.startsWith(`| \`${task}\``));
    assert(line !== undefined, `README has a row for ${task}`);
    return line.split("|")[2].trim();
  };
  const names = (purpose: "demo" | "test" | "bench", without: string[] = []) =>
    packagesFor(purpose).map((pkg) => pkg.name).filter((name) => !without.includes(name))
      .map((name) => `\`${name}\``).join(" ");
  const demo = packagesFor("demo").map((pkg) => pkg.name);
  assertEquals(row("demo"), names("demo"));
  assertEquals(row("test"), `the demo's, and ${names("test", demo)}`);
  assertEquals(row("bench"), `the demo's, and ${names("bench", demo)}`);
});
