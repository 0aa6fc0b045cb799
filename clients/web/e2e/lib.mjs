// Shared by the browser test scripts: launching Debian's Chromium through
// playwright-core, and the line protocol with the Go test that runs them.
//
// A script prints "STEP <name>" when it needs the Go side to act (restart
// the server, cut the network) and waits for one line on stdin before
// going on. Anything else it prints is logged by the Go test. It exits 0
// when every check passed, non-zero with the reason on stderr otherwise.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

// Default wait for anything a page should show: generous, since it only
// matters when a test fails, and -race builds of the server are slow.
export const WAIT = 15000;

export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic",
    ],
  });
  return browser;
}

// newPage opens a page whose console errors and uncaught exceptions fail
// the test: a demo that throws is broken even if it shows something.
export async function newPage(browser, errors = []) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (e) => errors.push(`${page.url()}: uncaught ${e.message}`));
  page.on("console", (m) => {
    if (m.type() == "error") errors.push(`${page.url()}: console.error ${m.text()}`);
  });
  return page;
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// step asks the Go test to do name and waits until it is done.
export async function step(name) {
  console.log("STEP " + name);
  const { done } = await lines.next();
  if (done) throw new Error(`step ${name}: the Go test closed stdin`);
}

export function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// main runs fn and exits with its verdict.
export function main(fn) {
  fn(process.argv.slice(2)).then(
    () => process.exit(0),
    (e) => {
      console.error("FAIL: " + (e && e.stack ? e.stack : e));
      process.exit(1);
    },
  );
}
