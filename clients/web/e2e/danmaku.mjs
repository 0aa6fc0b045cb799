// A bullet comment typed in one browser flies across another; a viewer
// over the publish rate is told to slow down. Usage: node danmaku.mjs BASE_URL
import { launch, newPage, check, main } from "./lib.mjs";

main(async ([base]) => {
  const browser = await launch();
  const errors = [];
  const [a, b] = [await newPage(browser, errors), await newPage(browser, errors)];
  for (const p of [a, b]) {
    await p.goto(base + "/danmaku.html");
    await p.waitForSelector("#status[data-state=connected]");
  }
  // Both are subscribed once connected plus one round trip: a history
  // request on the same connection is answered after the subscribe.
  for (const p of [a, b]) await p.evaluate(() => window.herald.history("danmaku:demo"));

  const text = "hello from A " + Math.random().toString(36).slice(2, 8);
  await a.fill("#text", text);
  await a.press("#text", "Enter");
  await b.waitForSelector(`.bullet[data-text="${text}"]`);
  await a.waitForSelector(`.bullet.mine[data-text="${text}"]`);
  check(await b.locator(`.bullet.mine[data-text="${text}"]`).count() == 0, "B shows A's comment as its own");
  console.log("a comment typed in A flew across B");

  // 3 per second: a burst of 10 more is refused in part, and A is told.
  // Submitted in one synchronous loop inside the page, so that a slow
  // machine cannot stretch the burst past the rate's window.
  await a.evaluate(() => {
    const input = document.getElementById("text");
    const form = document.getElementById("send");
    for (let i = 0; i < 10; i++) {
      input.value = `burst ${i}`;
      form.requestSubmit();
    }
  });
  await a.waitForSelector(".toast.show:has-text('Slow down')");
  console.log("rate limit: A was told to slow down");

  check(errors.length == 0, "errors in the pages:\n" + errors.join("\n"));
  await browser.close();
});
