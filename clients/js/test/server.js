// Starts a real `nexo serve` for the integration tests. The binary comes
// from $NEXO_BIN, or is built with `go build` into a temporary directory.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
let built;

function binary() {
  if (process.env.NEXO_BIN) return process.env.NEXO_BIN;
  if (!built) {
    const dir = mkdtempSync(join(tmpdir(), "nexo-js-"));
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    built = join(dir, "nexo");
    execFileSync("go", ["build", "-o", built, "./cmd/nexo"], { cwd: ROOT, stdio: "inherit" });
  }
  return built;
}

/**
 * Starts nexo serve with the native and web doors on ephemeral loopback
 * ports (legacy and admin off) and resolves with {native, web, stop()}
 * once both are listening. stop() sends SIGTERM and resolves with the
 * exit code.
 */
export function startServer(...args) {
  const proc = spawn(binary(), ["serve", "--native-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0",
    "--legacy-addr", "", "--admin-addr", "", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve(code ?? signal)));
  return new Promise((resolve, reject) => {
    const addrs = {};
    let log = "";
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (chunk) => {
      log += chunk;
      for (const m of log.matchAll(/msg=listening door=(\w+) addr=(\S+)/g)) addrs[m[1]] = m[2];
      if (addrs.native && addrs.web && !addrs.done) {
        addrs.done = true;
        resolve({
          native: addrs.native,
          web: addrs.web,
          log: () => log,
          stop: () => { proc.kill("SIGTERM"); return exited; },
        });
      }
    });
    exited.then((code) => reject(new Error(`nexo serve exited (${code}) before listening:\n${log}`)));
  });
}
