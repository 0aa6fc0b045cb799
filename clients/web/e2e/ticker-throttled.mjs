// The stock ticker on a slow link (the Go test puts a 8 KB/s proxy in
// front of the node and floods the feed): the board stays connected and
// ends up showing the latest price, its cards counting the ticks the
// server skipped. Usage: node ticker-throttled.mjs BASE_URL (the proxy's)
import { launch, newPage, check, step, main } from "./lib.mjs";

main(async ([base]) => {
  const browser = await launch();
  const errors = [];
  const page = await newPage(browser, errors);
  await page.goto(base + "/stocks.html");
  await page.waitForSelector("#status[data-state=connected]");
  await page.waitForFunction(() => document.querySelectorAll(".tick:not(.waiting)").length == 8);
  await page.evaluate(() => {
    window.states = [];
    window.herald.on("state", (s) => window.states.push(`${s.state} ${s.code || ""} ${s.reason || ""}`));
  });

  await step("flood"); // far more than the link carries, then AAPL at 4,321.09
  await page.waitForFunction(() => document.querySelector("[data-symbol=AAPL] .price").textContent == "4,321.09", null, { timeout: 60000 });
  const states = await page.evaluate(() => window.states);
  check(states.length == 0, "the board's connection changed state during the flood: " + states.join("; "));
  const ticks = await page.locator("[data-symbol=AAPL] .ticks").textContent();
  check(/skipped/.test(ticks), `AAPL card says ${JSON.stringify(ticks)}, want a count of skipped ticks`);
  console.log(`throttled board stayed connected and shows the latest AAPL price; its card: ${ticks}`);

  check(errors.length == 0, "errors in the page:\n" + errors.join("\n"));
  await browser.close();
});
