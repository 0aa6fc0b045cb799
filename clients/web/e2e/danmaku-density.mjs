// The danmaku stage caps its density (maxRate 8): a flood of 60 comments
// at once (the Go test publishes them) shows as "N comments/s skipped",
// and only a few of them fly, the newest last. Usage: node danmaku-density.mjs BASE_URL
import { launch, newPage, check, step, main } from "./lib.mjs";

main(async ([base]) => {
  const browser = await launch();
  const errors = [];
  const page = await newPage(browser, errors);
  await page.goto(base + "/danmaku.html");
  await page.waitForSelector("#status[data-state=connected]");
  // Subscribed once a request on the same connection is answered.
  await page.evaluate(() => window.herald.history("danmaku:demo"));
  check(await page.locator("#skipped").textContent() == "0 comments/s skipped", "skipped counter not at 0 before the flood");

  await step("flood");
  await page.waitForSelector('.bullet[data-text="flood 59"]');
  const shown = await page.locator("#skipped").textContent();
  check(/^[1-9]\d* comments\/s skipped$/.test(shown), `counter says ${JSON.stringify(shown)} after the flood`);
  const flying = await page.evaluate(() => [...document.querySelectorAll(".bullet")].filter((b) => b.dataset.text.startsWith("flood ")).length);
  check(flying <= 3, `${flying} of the 60 flood comments fly: the stage's maxRate did not hold`);
  console.log(`flood of 60: ${flying} flew, the counter said "${shown}"`);
  // The counter is a rate over the last second: it goes back to 0.
  await page.waitForFunction(() => document.getElementById("skipped").textContent == "0 comments/s skipped");

  check(errors.length == 0, "errors in the page:\n" + errors.join("\n"));
  await browser.close();
});
