// The admin page against a real node. Usage: node admin.mjs BASE_URL KEY CHANNEL
//
// The Go test has a WebSocket subscriber on CHANNEL before this starts.
//  1. a wrong key is refused, clearly, and not kept;
//  2. with the key: the node's figures from herald:stats, the channel in
//     the top channels, figures moving live as clients connect;
//  3. another node reporting appears, and drops out when it goes silent;
//  4. the publish form delivers to the subscriber (the Go test checks)
//     and shows the server's error for a bad channel;
//  5. the key is in sessionStorage only, and survives a reload of the tab.
import { launch, newPage, step, check, main } from "./lib.mjs";

main(async ([base, key, channel]) => {
  const browser = await launch();
  const errors = [];
  const page = await newPage(browser, errors);
  const text = (sel) => page.locator(sel).textContent();
  const figure = async (sel) => Number((await text(sel)).replace(/,/g, ""));

  await page.goto(base + "/admin");
  check(await page.isVisible("#login") && !(await page.isVisible("#dash")), "the page does not start by asking for the key");

  // 1. A wrong key.
  await page.fill("#key", "not-the-key");
  await page.click("#sign-in");
  await page.waitForSelector("#error:not(.hidden)");
  const refused = await text("#error");
  check(/wrong api key/i.test(refused) && /invalid API key/.test(refused), "wrong key shows " + JSON.stringify(refused));
  check(await page.isVisible("#login") && !(await page.isVisible("#dash")), "the dashboard shows after a wrong key");
  check(await page.evaluate(() => sessionStorage.length) == 0, "a wrong key was kept in sessionStorage");
  console.log("wrong key: " + refused);

  // 2. The right key: the node's figures.
  await page.fill("#key", key);
  await page.click("#sign-in");
  await page.waitForSelector("#status[data-state=connected]");
  check(!(await page.isVisible("#error")), "the error stays after signing in");
  // The admin's own WebSocket and the Go test's subscriber.
  await page.waitForFunction(() => {
    const row = document.querySelector("#nodes tr[data-node=test-node]");
    return row && Number(row.querySelector(".connections").textContent) >= 2 && Number(row.querySelector(".subscriptions").textContent) >= 1;
  });
  check(await text("#total-nodes") == "1", "nodes: " + (await text("#total-nodes")));
  await page.waitForSelector(`#channels tr[data-channel="${channel}"]`);
  check(await text(`#channels tr[data-channel="${channel}"] .subscribers`) == "1", "top channels: " + (await text("#channels")));
  const before = await figure("#nodes tr[data-node=test-node] .connections");
  console.log(`figures: test-node ${before} connections, ${await text("#nodes tr[data-node=test-node] .subscriptions")} subscriptions; ${channel} in the top channels`);

  // Live: a client connects and the figures follow, with no reload.
  await step("connect");
  await page.waitForFunction((n) => Number(document.querySelector("#nodes tr[data-node=test-node] .connections").textContent) == n + 1, before);
  await page.waitForFunction((n) => Number(document.getElementById("total-connections").textContent) == n + 1, before);
  console.log(`live: connections ${before} -> ${before + 1}`);

  // 3. Another node reports, then goes silent.
  await step("ghost-on");
  await page.waitForSelector("#nodes tr[data-node=ghost]");
  await page.waitForFunction(() => document.getElementById("total-nodes").textContent == "2");
  check(await text("#nodes tr[data-node=ghost] .connections") == "7", "ghost connections: " + (await text("#nodes tr[data-node=ghost]")));
  await page.waitForFunction((n) => Number(document.getElementById("total-connections").textContent) == n + 8, before);
  await step("ghost-off");
  await page.waitForSelector("#nodes tr[data-node=ghost]", { state: "detached" });
  check(await text("#total-nodes") == "1", "nodes after the ghost: " + (await text("#total-nodes")));
  console.log("another node: appeared, counted in the totals, dropped out when silent");

  // 4. Publish through the form.
  await page.fill("#pub-channel", channel);
  await page.fill("#pub-data", '{"from": "the admin page"}');
  await page.click("#pub-send");
  await page.waitForSelector("#pub-result.ok");
  const answer = await text("#pub-result");
  check(/"offset":\d+/.test(answer) && answer.includes(`"channel":"${channel}"`), "publish answer " + JSON.stringify(answer));
  await step("delivered");
  console.log("publish: " + answer);

  await page.fill("#pub-channel", "no spaces allowed");
  await page.click("#pub-send");
  await page.waitForSelector("#pub-result.err");
  const bad = await text("#pub-result");
  check(/HTTP 400/.test(bad), "bad channel shows " + JSON.stringify(bad));
  check(await page.isVisible("#dash"), "a publish error signed the page out");
  console.log("publish error: " + bad);

  // 5. The key: this tab's sessionStorage only.
  const stored = await page.evaluate(() => ({ session: Object.values(sessionStorage), local: localStorage.length, cookie: document.cookie }));
  check(stored.session.length == 1 && stored.session[0] == key && stored.local == 0 && stored.cookie == "", "stored: " + JSON.stringify(stored));
  await page.reload();
  await page.waitForSelector("#status[data-state=connected]");
  await page.waitForSelector("#nodes tr[data-node=test-node]");
  await page.click("#logout");
  await page.waitForSelector("#login:not(.hidden)");
  check(await page.evaluate(() => sessionStorage.length) == 0, "sign out kept the key");
  console.log("key: sessionStorage only, kept across a reload, gone on sign out");

  // The browser logs refused requests (401, 400) itself: those were the point.
  const real = errors.filter((e) => !/Failed to load resource: the server responded with a status of 40[01]/.test(e));
  check(real.length == 0, "errors in the page:\n" + real.join("\n"));
  await browser.close();
});
