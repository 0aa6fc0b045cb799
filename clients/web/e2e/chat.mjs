// Chat: a line sent in one browser shows in another, and in the history
// of a browser that arrives later. Usage: node chat.mjs BASE_URL
import { launch, newPage, check, main } from "./lib.mjs";

main(async ([base]) => {
  const browser = await launch();
  const errors = [];
  const open = async (name) => {
    const p = await newPage(browser, errors);
    await p.goto(base + "/chat.html");
    await p.waitForSelector("#status[data-state=connected]");
    await p.fill("#name", name);
    await p.evaluate(() => window.herald.history("chat:lobby")); // subscribed by now
    return p;
  };
  const a = await open("alice");
  const b = await open("bob");
  await a.fill("#text", "hi bob");
  await a.press("#text", "Enter");
  await b.waitForSelector(".msg:not(.mine):has-text('hi bob'):has-text('alice')");
  await a.waitForSelector(".msg.mine:has-text('hi bob')");
  console.log("alice's line reached bob");

  const c = await open("carol");
  await c.waitForSelector(".msg.old:has-text('hi bob')");
  console.log("carol found it in the history");

  check(errors.length == 0, "errors in the pages:\n" + errors.join("\n"));
  await browser.close();
});
