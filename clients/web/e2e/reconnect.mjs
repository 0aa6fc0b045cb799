// herald.js through failures, in a real browser. The page talks to the
// server through a proxy the Go test controls; publishes go straight to
// the server. Usage: node reconnect.mjs PROXY_URL SERVER_URL
//
//  1. heartbeats: the client answers pings, so the server keeps it;
//  2. cut: the network drops while messages are published; the client
//     reconnects and resumes with since: every message once, in order;
//  3. freeze: the path goes dead without closing; the heartbeat watchdog
//     notices, reconnects and resumes the same way;
//  4. restart: the (memory) server restarts on the same port: a new epoch,
//     so the client surfaces recovered:false (onReset) and goes on live.
import { launch, newPage, step, check, main, WAIT } from "./lib.mjs";

const CHANNEL = "sports:reconnect";

main(async ([proxy, server]) => {
  const browser = await launch();
  const errors = [];
  const page = await newPage(browser, errors);
  // Count the pongs the client sends, from outside herald.js.
  await page.addInitScript(() => {
    window.pongs = 0;
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (d) {
      if (d == '{"type":"pong"}') window.pongs++;
      return send.call(this, d);
    };
  });
  await page.goto(proxy + "/");
  await page.evaluate(async (channel) => {
    const { Herald } = await import("/herald.js");
    const log = (window.log = { states: [], data: [], subscribed: [], resets: [] });
    const h = (window.h = new Herald({ minBackoff: 50, maxBackoff: 500 }));
    h.on("state", (e) => log.states.push(e));
    h.subscribe(channel, (d) => log.data.push(d), {
      onSubscribed: (i) => log.subscribed.push(i),
      onReset: (at) => log.resets.push(at),
    });
  }, CHANNEL);
  const log = () => page.evaluate(() => window.log);
  const until = (fn, arg) => page.waitForFunction(fn, arg, { timeout: WAIT });
  const publish = async (...values) => {
    for (const v of values) {
      const r = await fetch(server + "/api/publish", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ channel: CHANNEL, data: v }) });
      check(r.ok, `publish ${v}: HTTP ${r.status}`);
    }
  };
  const disconnects = async () => (await log()).states.filter((s) => s.state == "disconnected");

  await until(() => window.log.subscribed.length == 1);
  await publish(1, 2, 3);
  await until(() => window.log.data.length == 3);

  // 1. Four pongs span more than the server's heartbeat timeout (3 intervals).
  await until(() => window.pongs >= 4);
  check((await disconnects()).length == 0, "disconnected while answering pings: " + JSON.stringify(await disconnects()));
  console.log("heartbeats: 4 pongs, still connected");

  // 2. The network drops; 4..6 are published while the client is away.
  await step("cut");
  await until(() => window.log.states.some((s) => s.state == "disconnected"));
  await publish(4, 5, 6);
  await step("open");
  await until(() => window.log.subscribed.length == 2 && window.log.data.length == 6);
  let l = await log();
  check(l.subscribed[1].recovered, "resubscribe after the cut: recovered " + l.subscribed[1].recovered);
  console.log("cut: disconnected " + JSON.stringify((await disconnects())[0]) + ", resumed with since");

  // 3. The path goes silent; only the watchdog can tell.
  const seen = (await disconnects()).length; // the cut and the refused retries
  await step("freeze");
  await publish(7, 8);
  await until(() => window.log.subscribed.length == 3 && window.log.data.length == 8);
  const dead = (await disconnects())[seen];
  check(/heartbeat timeout/.test(dead.reason), "the frozen path was not found by the watchdog: " + JSON.stringify(dead));
  l = await log();
  check(l.subscribed[2].recovered, "resubscribe after the freeze: recovered false");
  console.log("freeze: " + dead.reason + ", resumed with since");

  await publish(9);
  await until(() => window.log.data.length == 9);
  l = await log();
  check(JSON.stringify(l.data) == "[1,2,3,4,5,6,7,8,9]", "received " + JSON.stringify(l.data) + ", want 1..9 once each in order");
  check(l.resets.length == 0, "reset surfaced while history covered the gaps");

  // 4. The server restarts: a memory broker starts a new epoch.
  const before = l.subscribed[2];
  await step("restart");
  await until(() => window.log.resets.length == 1 && window.log.subscribed.length == 4);
  l = await log();
  const going = l.states.find((s) => s.state == "disconnected" && s.code == 1001);
  check(going, "no 1001 going-away close surfaced: " + JSON.stringify(l.states));
  check(!l.subscribed[3].recovered && l.resets[0].epoch != before.epoch, "after restart: " + JSON.stringify(l.subscribed[3]) + " resets " + JSON.stringify(l.resets));
  await publish(10, 11);
  await until(() => window.log.data.length == 11);
  l = await log();
  check(JSON.stringify(l.data.slice(9)) == "[10,11]", "after restart received " + JSON.stringify(l.data.slice(9)));
  console.log(`restart: 1001 "${going.reason}", recovered:false surfaced (epoch ${before.epoch} -> ${l.resets[0].epoch}), live again`);

  // close() ends it for good: no reconnect afterwards.
  await page.evaluate(() => window.h.close());
  l = await log();
  check(l.states[l.states.length - 1].state == "closed", "last state " + JSON.stringify(l.states[l.states.length - 1]));

  // Chromium itself logs a WebSocket whose handshake the cut or the restart
  // broke (ERR_CONNECTION_RESET, _REFUSED, _CLOSED; ERR_SOCKET_NOT_CONNECTED
  // when the proxy resets a connection it accepted while the server was
  // down): that is the test, not the page.
  const real = errors.filter((e) => !/WebSocket connection to '.*' failed: .*net::ERR_(CONNECTION_(RESET|REFUSED|CLOSED)|SOCKET_NOT_CONNECTED)/.test(e));
  check(real.length == 0, "errors in the page:\n" + real.join("\n"));
  await browser.close();
});
