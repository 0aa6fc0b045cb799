// herald.js with shared: true and tokens, in Chromium: which token the one
// shared connection uses, and what each tab sees when the server ends it.
// Usage: node shared-token.mjs BASE_URL API_KEY TOKEN_SECRET
//
//  1. tab 1 has a token function: its first token has expired (the
//     server refuses it, 1008: the function is asked again), the second
//     lives 2-3 s, the next an hour; tab 2 has no token: one connection,
//     as alice, in both;
//  2. the first token expires: the server closes 4003; tab 1 is asked for
//     a new token, tab 2 (not its token) just reconnects; both go on as
//     alice on one connection and miss nothing;
//  3. alice is kicked (4004): every tab ends; a new tab then opens a new
//     shared connection.
import { createHmac } from "node:crypto";
import { launch, check, main, WAIT } from "./lib.mjs";

const CH = "sports:token";

// mint signs an HS256 token for alice living ttl seconds, less up to one
// (exp has one-second precision).
function mint(secret, ttl) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const body = b64({ alg: "HS256", typ: "JWT" }) + "." + b64({ sub: "alice", iat: now, exp: now + ttl });
  return body + "." + createHmac("sha256", secret).update(body).digest("base64url");
}

main(async ([base, key, secret]) => {
  const browser = await launch();
  const errors = [];
  const ctx = await browser.newContext();
  await ctx.exposeFunction("mint", (ttl) => mint(secret, ttl));
  const open = async () => {
    const page = await ctx.newPage();
    page.setDefaultTimeout(WAIT);
    page.on("pageerror", (e) => errors.push(`uncaught ${e.message}`));
    page.on("console", (m) => m.type() == "error" && errors.push(`console.error ${m.text()}`));
    await page.goto(base + "/");
    return page;
  };
  const start = (page, withToken) =>
    page.evaluate(async ([ch, withToken]) => {
      const { Herald } = await import("/herald.js");
      const log = (window.log = { states: [], users: [], data: [], calls: 0 });
      const token = withToken ? () => window.mint([-10, 3][log.calls++] || 3600) : undefined;
      window.h = new Herald({ shared: true, token, minBackoff: 50, maxBackoff: 500 });
      window.h.on("state", (e) => log.states.push(e));
      window.h.on("connected", (w) => log.users.push(w.user || null));
      window.h.subscribe(ch, (d) => log.data.push(d));
    }, [CH, withToken]);
  const tab = async (withToken) => {
    const page = await open();
    await start(page, withToken);
    return page;
  };
  const until = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: WAIT });
  const log = (page) => page.evaluate(() => window.log);
  const stats = async () => (await (await fetch(base + "/api/stats", { headers: { Authorization: "Bearer " + key } })).json()).total;
  const publish = async (v) => {
    const r = await fetch(base + "/api/publish", { method: "POST", headers: { "Content-Type": "application/json", Authorization: "Bearer " + key }, body: JSON.stringify({ channel: CH, data: v }) });
    check(r.ok, `publish ${v}: HTTP ${r.status}`);
  };
  const waitConns = async (n, what) => {
    const end = Date.now() + WAIT;
    let s;
    while ((s = await stats()).connections != n) {
      check(Date.now() < end, `${what}: ${s.connections} connections on the server, want ${n}`);
      await new Promise((r) => setTimeout(r, 50)); // polling the server's figure
    }
  };

  // 1. One connection as alice, with tab 1's token.
  // Both pages are loaded first: tab 2's Herald starts as soon as tab 1's
  // first token is refused, so that it is on the connection before tab
  // 1's second token expires.
  const t1 = await open(), t2 = await open();
  await start(t1, true);
  await until(t1, () => window.log.states.some((s) => s.code == 1008));
  await start(t2, false);
  for (const p of [t1, t2]) await until(p, () => window.log.users.length == 1);
  for (const p of [t1, t2]) check((await log(p)).users[0] == "alice", "not alice: " + JSON.stringify((await log(p)).users));
  const refused = (await log(t1)).states.find((s) => s.state == "disconnected");
  check(refused && refused.code == 1008, "tab 1's expired token: " + JSON.stringify(refused));
  await waitConns(1, "two tabs");
  await publish(1);
  for (const p of [t1, t2]) await until(p, () => window.log.data.length == 1);

  // 2. The first token expires: 4003 ends the connection.
  const states = async () => JSON.stringify([(await log(t1)).states, (await log(t2)).states]);
  for (const p of [t1, t2]) await until(p, () => window.log.users.length == 2).catch(async (e) => check(false, e.message + ": " + (await states())));
  const l1 = await log(t1), l2 = await log(t2);
  const d1 = l1.states.filter((s) => s.state == "disconnected")[1];
  const d2 = l2.states.find((s) => s.state == "disconnected");
  check(d1.code == 4003, "tab 1 (its token expired): " + JSON.stringify(d1));
  check(d2.code == 1006 && /4003/.test(d2.reason), "tab 2 (no token of its own): " + JSON.stringify(d2));
  check(l1.calls == 3, `tab 1's token function called ${l1.calls} times, want 3`);
  check(l1.users[1] == "alice" && l2.users[1] == "alice", "after the refresh: " + JSON.stringify([l1.users, l2.users]));
  check(!l1.states.concat(l2.states).some((s) => s.state == "closed"), "a tab closed on the expiry");
  await waitConns(1, "after the refresh");
  await publish(2);
  for (const p of [t1, t2]) {
    await until(p, () => window.log.data.length == 2);
    check(JSON.stringify((await log(p)).data) == "[1,2]", "received " + JSON.stringify((await log(p)).data));
  }
  console.log(`expiry: tab 1 4003 and a fresh token, tab 2 "${d2.reason}", one connection as alice`);

  // 3. Kicked: every tab ends.
  const r = await fetch(base + "/api/disconnect", { method: "POST", headers: { Authorization: "Bearer " + key, "Content-Type": "application/json" }, body: JSON.stringify({ user: "alice" }) });
  check(r.ok, "disconnect: HTTP " + r.status);
  for (const p of [t1, t2]) {
    await until(p, () => window.h.state == "closed").catch(async (e) => check(false, `${e.message}: after the kick: ${await states()}, ${JSON.stringify(await stats())}`));
    const last = (await log(p)).states.at(-1);
    check(last.code == 4004 && last.permanent, "kicked: " + JSON.stringify(last));
  }
  await waitConns(0, "after the kick");
  const t3 = await tab(false);
  await until(t3, () => window.log.users.length == 1);
  check((await log(t3)).users[0] === null, "a new tab after the kick: " + JSON.stringify((await log(t3)).users));
  await waitConns(1, "a new tab after the kick");
  console.log("kick: 4004 ended every tab; a new tab opened a new shared connection");

  // Chromium logs the WebSocket the server refused; nothing else may show.
  const other = errors.filter((e) => !e.includes("WebSocket"));
  check(other.length == 0, other.join("\n"));
  await browser.close();
});
