// herald.js in Chromium after closes that retrying cannot fix: a refused
// token (1008) ends the client after one attempt, and a kick (4004) ends
// it even with a token function. Usage:
//   node permanent.mjs BASE_URL API_KEY TOKEN_OF_ALICE
import { launch, newPage, check, main } from "./lib.mjs";

main(async ([base, key, token]) => {
  const browser = await launch();
  const errors = [];
  const page = await newPage(browser, errors);
  await page.goto(base + "/");
  await page.evaluate(async (token) => {
    const { Herald } = await import("/herald.js");
    const log = (window.log = { bad: [], kicked: [], calls: 0 });
    new Herald({ token: "not-a-jwt", minBackoff: 1, onState: (e) => log.bad.push(e) });
    window.k = new Herald({ minBackoff: 1, token: () => (log.calls++, token), onState: (e) => log.kicked.push(e) });
  }, token);
  await page.waitForFunction(() => window.log.bad.some((s) => s.state == "closed") && window.k.state == "connected");
  const d = await fetch(base + "/api/disconnect", { method: "POST", headers: { Authorization: "Bearer " + key, "Content-Type": "application/json" }, body: JSON.stringify({ user: "alice" }) });
  check(d.ok, "disconnect: HTTP " + d.status);
  await page.waitForFunction(() => window.k.state == "closed");
  const log = await page.evaluate(() => window.log);
  const bad = log.bad[log.bad.length - 1], kicked = log.kicked[log.kicked.length - 1];
  check(bad.code == 1008 && bad.permanent && log.bad.filter((s) => s.state == "connecting").length == 1, "bad token: " + JSON.stringify(log.bad));
  check(kicked.code == 4004 && kicked.permanent && log.calls == 1, "kicked: " + JSON.stringify(log.kicked) + `, ${log.calls} token calls`);
  await browser.close();
  // The refused token is logged by Chromium as a failed socket; nothing
  // else may show up on the console.
  const other = errors.filter((e) => !e.includes("WebSocket"));
  check(other.length == 0, other.join("\n"));
  console.log("browser: 1008 and 4004 end herald.js, no reconnect loop");
});
