// Every demo page loads and shows live data from a server running the
// demo feeds. Usage: node pages.mjs BASE_URL
import { launch, newPage, check, main } from "./lib.mjs";

main(async ([base]) => {
  const browser = await launch();
  const errors = [];
  const page = await newPage(browser, errors);
  const connected = () => page.waitForSelector("#status[data-state=connected]");

  // The index links every demo.
  await page.goto(base + "/");
  for (const href of ["/stocks.html", "/sports.html", "/danmaku.html", "/chat.html", "/test.html"]) {
    check(await page.locator(`main a[href="${href}"]`).count() == 1, `index has no link to ${href}`);
  }

  // Stocks: every card shows its snapshot at once, then prices move and flash.
  await page.goto(base + "/stocks.html");
  await connected();
  await page.waitForFunction(() => document.querySelectorAll(".tick:not(.waiting)").length == 8);
  await page.waitForSelector(".price.flash-up, .price.flash-down");
  const price = await page.locator("[data-symbol=AAPL] .price").textContent();
  check(/^\d[\d,]*\.\d\d$/.test(price), `AAPL shows ${JSON.stringify(price)}, want a price`);
  console.log("stocks: 8 snapshots, live ticks flashing; AAPL at " + price);

  // Sports: the match so far from history, then the clock moves live.
  await page.goto(base + "/sports.html");
  await connected();
  await page.waitForSelector("#feed li");
  const minute = await page.locator("#minute").textContent();
  await page.waitForFunction((m) => document.getElementById("minute").textContent != m, minute);
  console.log(`sports: feed loaded, clock moved from ${minute} to ${await page.locator("#minute").textContent()}`);

  // Bullet comments: the bots' comments fly over the stage.
  await page.goto(base + "/danmaku.html");
  await connected();
  await page.waitForSelector("#stage .bullet");
  console.log("danmaku: a bot comment is flying");

  // Chat: history when arriving, then new lines live.
  await page.goto(base + "/chat.html");
  await connected();
  await page.waitForSelector(".msg.old");
  const before = await page.locator(".msg").count();
  await page.waitForFunction((n) => document.querySelectorAll(".msg").length > n, before);
  console.log(`chat: ${before} lines from history, then live ones`);

  // The raw WebSocket test page: open, frames in and out, close.
  await page.goto(base + "/test.html");
  await page.click("#connect");
  await page.waitForFunction(() => document.getElementById("state").textContent == "OPEN (1)");
  await page.waitForSelector("#log .in"); // the welcome frame
  await page.click("#send"); // the default frame subscribes to "sports"
  await page.waitForFunction(() => document.getElementById("log").textContent.includes('"type":"subscribed"'));
  const r = await fetch(base + "/api/publish", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ channel: "sports", data: "from the test" }) });
  check(r.ok, `publish: HTTP ${r.status}`);
  await page.waitForFunction(() => document.getElementById("log").textContent.includes('"data":"from the test"'));
  check(/^\d+$/.test(await page.locator("#buffered").textContent()), "bufferedAmount is not shown");
  await page.click("#close");
  await page.waitForFunction(() => document.getElementById("log").textContent.includes("onclose code=1000"));
  await page.waitForFunction(() => document.getElementById("state").textContent == "CLOSED (3)");
  console.log("test page: open, subscribe, message, close 1000");

  check(errors.length == 0, "errors in the pages:\n" + errors.join("\n"));
  await browser.close();
});
