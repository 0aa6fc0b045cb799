// herald.js with shared: true, in real Chromium: tabs of one origin share
// one WebSocket through herald-worker.js. The pages talk to the server
// through a proxy the Go test controls; publishes and the server's own
// counts (/api/stats, /api/channels) go straight to the server.
// Usage: node shared.mjs PROXY_URL SERVER_URL
//
//  1. three tabs, one WebSocket on the server, one server subscription per
//     channel; every tab gets every message; a tab joining later with since
//     gets what it missed (from history), one joining without since the
//     snapshot;
//  2. cut: the network drops while messages are published; every tab
//     resumes: each message once, in order;
//  3. two tabs close, one with pagehide, one without a word (only its Web
//     Lock tells): the channel only they had is unsubscribed on the
//     server, the third tab's stays and keeps receiving;
//  4. restart: a new epoch, so the last tab's onReset runs, and it goes on;
//  5. without SharedWorker, shared: true falls back to a connection of the
//     tab's own.
import { launch, step, check, main, WAIT } from "./lib.mjs";

const ALL = "sports:shared"; // every tab
const TWO = "stocks:shared"; // tabs 1 and 2 only

main(async ([proxy, server]) => {
  const browser = await launch();
  const errors = [];
  const ctx = await browser.newContext();
  const tab = async (init) => {
    const page = await ctx.newPage();
    page.setDefaultTimeout(WAIT);
    page.on("pageerror", (e) => errors.push(`${page.url()}: uncaught ${e.message}`));
    page.on("console", (m) => m.type() == "error" && errors.push(`${page.url()}: console.error ${m.text()}`));
    if (init) await page.addInitScript(init);
    await page.goto(proxy + "/");
    await page.evaluate(async () => {
      const { Herald } = await import("/herald.js");
      window.log = { states: [], data: {}, subscribed: {}, resets: {}, snapshots: [] };
      window.h = new Herald({ shared: true, minBackoff: 50, maxBackoff: 500 });
      window.h.on("state", (e) => window.log.states.push(e));
      window.sub = (channel, since) =>
        window.h.subscribe(channel, (d, m) => {
          (window.log.data[channel] ||= []).push(d);
          if (m.snapshot) window.log.snapshots.push(d);
        }, {
          since,
          onSubscribed: (i) => (window.log.subscribed[channel] ||= []).push(i),
          onReset: (at) => (window.log.resets[channel] ||= []).push(at),
        });
    });
    return page;
  };
  const until = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: WAIT });
  const data = (page, ch) => page.evaluate((ch) => window.log.data[ch] || [], ch);
  const publish = async (channel, ...values) => {
    for (const v of values) {
      const r = await fetch(server + "/api/publish", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ channel, data: v }) });
      check(r.ok, `publish ${v}: HTTP ${r.status}`);
    }
  };
  const get = async (path) => (await fetch(server + path)).json();
  // waitServer polls the server's own figures until want(stats, channels).
  const waitServer = async (what, want) => {
    const end = Date.now() + WAIT;
    let last;
    for (;;) {
      const stats = (await get("/api/stats")).total;
      const chans = Object.fromEntries(((await get("/api/channels?prefix=s")).channels || []).map((c) => [c.channel, c.subscribers]));
      last = JSON.stringify({ connections: stats.connections, subscriptions: stats.subscriptions, chans });
      if (want(stats, chans)) return console.log(what + ": " + last);
      check(Date.now() < end, `${what}: the server shows ${last}`);
      await new Promise((r) => setTimeout(r, 50)); // polling the server's figures, not a wait for luck
    }
  };
  const same = (got, want, what) => check(JSON.stringify(got) == JSON.stringify(want), `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);

  // 1. Tabs 1 and 2 on both channels; TWO has a message before anyone
  // subscribes, so the first subscribe brings its snapshot.
  await publish(TWO, "p0");
  // Tab 2's farewell at pagehide is dropped: only its lock can tell the
  // worker that it is gone.
  const tabs = [await tab(), await tab(() => {
    const post = MessagePort.prototype.postMessage;
    MessagePort.prototype.postMessage = function (d, ...rest) {
      if (d && d.bye) return;
      return post.call(this, d, ...rest);
    };
  })];
  await tabs[0].evaluate(([a, b]) => (window.sub(a), window.sub(b)), [ALL, TWO]);
  await until(tabs[0], (b) => (window.log.data[b] || []).length == 1, TWO);
  await publish(TWO, "p1");
  await until(tabs[0], (b) => window.log.data[b].length == 2, TWO);
  await tabs[1].evaluate(([a, b]) => (window.sub(a), window.sub(b)), [ALL, TWO]);
  await until(tabs[1], (b) => (window.log.data[b] || []).length == 1, TWO);
  same(await tabs[1].evaluate(() => window.log.snapshots), ["p1"], "tab 2 joining TWO: the snapshot");
  await publish(ALL, 1, 2, 3);
  for (const p of tabs) await until(p, (a) => (window.log.data[a] || []).length == 3, ALL);

  // Tab 3 joins ALL late, from the position of message 1.
  const since = await tabs[0].evaluate(() => window.log.subscribed);
  const pos1 = { epoch: since[ALL][0].epoch, offset: since[ALL][0].offset + 1 };
  tabs.push(await tab());
  await tabs[2].evaluate(([a, s]) => window.sub(a, s), [ALL, pos1]);
  await until(tabs[2], (a) => (window.log.data[a] || []).length == 2, ALL);
  same(await data(tabs[2], ALL), [2, 3], "tab 3 joining with since after message 1");
  check((await tabs[2].evaluate((a) => window.log.subscribed[a][0].recovered, ALL)) === true, "tab 3's since: recovered false");
  for (const p of tabs) same(await data(p, ALL), p == tabs[2] ? [2, 3] : [1, 2, 3], "before the cut");
  const clients = await Promise.all(tabs.map((p) => p.evaluate(() => window.h.client)));
  check(clients.every((c) => c && c == clients[0]), "tabs on different connections: " + clients);
  await waitServer("three tabs", (s, c) => s.connections == 1 && s.subscriptions == 2 && c[ALL] == 1 && c[TWO] == 1);

  // 2. The network drops; 4..6 are published while every tab is away.
  await step("cut");
  for (const p of tabs) await until(p, () => window.log.states.some((s) => s.state == "disconnected"));
  await publish(ALL, 4, 5, 6);
  await step("open");
  for (const p of tabs) await until(p, (a) => window.log.data[a].length == (window.log.data[a][0] == 1 ? 6 : 5), ALL);
  await publish(ALL, 7);
  for (const [i, p] of tabs.entries()) {
    await until(p, (a) => window.log.data[a].at(-1) == 7, ALL);
    same(await data(p, ALL), i == 2 ? [2, 3, 4, 5, 6, 7] : [1, 2, 3, 4, 5, 6, 7], `tab ${i + 1} after the cut`);
    const resets = await p.evaluate(() => window.log.resets);
    check(Object.keys(resets).length == 0, `tab ${i + 1}: reset while history covered the cut: ${JSON.stringify(resets)}`);
  }
  await waitServer("after the cut", (s, c) => s.connections == 1 && c[ALL] == 1 && c[TWO] == 1);
  console.log("cut: every tab resumed, each message once, in order");

  // 3. Tabs 1 (pagehide) and 2 (lock only) close without unsubscribing.
  await tabs[0].close();
  await tabs[1].close();
  await waitServer("tabs 1 and 2 closed", (s, c) => s.connections == 1 && s.subscriptions == 1 && c[ALL] == 1 && !c[TWO]);
  const last = tabs[2];
  await publish(ALL, 8);
  await until(last, (a) => window.log.data[a].at(-1) == 8, ALL);
  check(await last.evaluate(() => window.h.state == "connected"), "tab 3 not connected");

  // 4. The server restarts: a new epoch, surfaced through the worker.
  const epoch = pos1.epoch;
  await step("restart");
  await until(last, (a) => (window.log.resets[a] || []).length == 1, ALL);
  const reset = await last.evaluate((a) => window.log.resets[a][0], ALL);
  check(reset.epoch != epoch, "reset without a new epoch: " + JSON.stringify(reset));
  await publish(ALL, 9);
  await until(last, (a) => window.log.data[a].at(-1) == 9, ALL);
  same(await data(last, ALL), [2, 3, 4, 5, 6, 7, 8, 9], "tab 3 after the restart");
  await waitServer("after the restart", (s, c) => s.connections == 1 && c[ALL] == 1);
  console.log(`restart: recovered:false surfaced (epoch ${epoch} -> ${reset.epoch}), live again`);

  // 5. No SharedWorker: a connection of the tab's own.
  const solo = await tab(() => delete window.SharedWorker);
  await solo.evaluate((a) => window.sub(a), ALL);
  await waitServer("a tab without SharedWorker", (s, c) => s.connections == 2 && c[ALL] == 2);
  await publish(ALL, 10);
  await until(solo, (a) => (window.log.data[a] || []).at(-1) == 10, ALL);
  await until(last, (a) => window.log.data[a].at(-1) == 10, ALL);

  // close() in the last shared tab: the shared connection has no tab left;
  // its channel is dropped (the connection itself stays for new tabs).
  await last.evaluate(() => window.h.close());
  await waitServer("the last shared tab closed", (s, c) => c[ALL] == 1);

  // Chromium logs a WebSocket whose handshake the cut or the restart broke.
  const real = errors.filter((e) => !/WebSocket connection to '.*' failed: .*net::ERR_(CONNECTION_(RESET|REFUSED|CLOSED)|SOCKET_NOT_CONNECTED)/.test(e));
  check(real.length == 0, "errors in the pages:\n" + real.join("\n"));
  await browser.close();
});
