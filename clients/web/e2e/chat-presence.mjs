// Chat presence (issue 5): the online list follows joins and leaves.
// Usage: node chat-presence.mjs BASE_URL
import { launch, newPage, check, main } from "./lib.mjs";

main(async ([base]) => {
  const browser = await launch();
  const errors = [];
  const open = async () => {
    const p = await newPage(browser, errors);
    await p.goto(base + "/chat.html");
    await p.waitForSelector("#status[data-state=connected]");
    return p;
  };
  const members = (p) => p.locator("#members li").count();

  const a = await open();
  await a.waitForFunction(() => document.querySelectorAll("#members li").length == 1);
  check(await a.locator("#presence-note").isHidden(), "A: " + (await a.locator("#presence-note").textContent()));

  const b = await open();
  const bClient = await b.evaluate(() => window.herald.client);
  // B's presence reply lists both; A learns of B from a join event.
  await b.waitForFunction(() => document.querySelectorAll("#members li").length == 2);
  await a.waitForSelector(`#members li[data-client="${bClient}"]`);
  await a.waitForSelector(".system:has-text('joined')");
  check((await members(a)) == 2, `A lists ${await members(a)} members, want 2`);
  console.log("join: A saw B arrive");

  await b.context().close();
  await a.waitForSelector(".system:has-text('left')");
  await a.waitForFunction(() => document.querySelectorAll("#members li").length == 1);
  check(await a.locator(`#members li[data-client="${bClient}"]`).count() == 0, "A still lists B");
  console.log("leave: A saw B go");

  check(errors.length == 0, "errors in the pages:\n" + errors.join("\n"));
  await browser.close();
});
