// Saves a PNG of every demo page for the README:
//   go run ./cmd/herald serve --demo &
//   node clients/web/e2e/screenshots.mjs http://localhost:8080 docs/screenshots
import { launch, newPage, main } from "./lib.mjs";
import { mkdirSync } from "node:fs";

main(async ([base = "http://localhost:8080", dir = "docs/screenshots"]) => {
  mkdirSync(dir, { recursive: true });
  const browser = await launch();
  const page = await newPage(browser);
  const shots = [
    ["index", "/", null],
    ["stocks", "/stocks.html", ".tick:not(.waiting)"],
    ["sports", "/sports.html", "#feed li"],
    ["danmaku", "/danmaku.html", ".bullet"],
    ["chat", "/chat.html", ".msg"],
    ["test", "/test.html", null],
  ];
  for (const [name, path, ready] of shots) {
    await page.goto(base + path);
    if (ready) await page.waitForSelector(ready);
    if (name == "danmaku") {
      // A few comments of our own, so the stage is busy in the picture.
      for (const t of ["hello from the screenshot", "so smooth", "🔥🔥🔥"]) {
        await page.fill("#text", t);
        await page.press("#text", "Enter");
      }
      await page.waitForFunction(() => document.querySelectorAll(".bullet").length >= 6);
      // And a bots' flood, capped by the stage's maxRate: the counter of
      // skipped comments shows (the feed floods every 20 s or so).
      await page.waitForSelector("#skipped.on", { timeout: 60000 });
      await page.waitForSelector(".bullet >> nth=8"); // the flood on the stage too
    }
    if (name == "test") {
      await page.click("#connect");
      await page.waitForSelector("#log .in");
    }
    if (name == "stocks") await page.waitForFunction(() => /skipped/.test(document.querySelector("[data-symbol=NVDA] .ticks").textContent));
    if (name == "stocks" || name == "sports" || name == "chat") await page.waitForTimeout(2500); // let the feed fill the page
    await page.screenshot({ path: `${dir}/${name}.png` });
    if (name == "danmaku" && (await page.locator("#skipped").textContent()).startsWith("0 ")) {
      // The flood ended while the picture was taken: take the next one.
      await page.waitForSelector("#skipped.on", { timeout: 60000 });
      await page.screenshot({ path: `${dir}/${name}.png` });
    }
    console.log(`${dir}/${name}.png`);
  }
  await browser.close();
});
