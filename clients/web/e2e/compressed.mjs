// permessage-deflate as the server writes it (one deflate per message per
// node, no context takeover, RSV1 frames through the raw writer) decodes
// in Node's ws package and in Chromium: each negotiates the extension,
// receives two large messages in a row (the second one deflated on its own,
// with no window carried over) and reads them back as published.
// Usage: node compressed.mjs BASE_URL
import WebSocket from "ws";
import { check, launch, main, newPage, WAIT } from "./lib.mjs";

const text = (n) => "compressible score update ".repeat(200) + n;

async function publish(base, n) {
  const r = await fetch(base + "/api/publish", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ channel: "news", data: { text: text(n) } }),
  });
  check(r.ok, `HTTP publish: ${r.status}`);
}

main(async ([base]) => {
  const url = base.replace(/^http/, "ws") + "/ws?channel=news";

  // Node's ws: perMessageDeflate is on by default.
  const ws = new WebSocket(url, { perMessageDeflate: true });
  const inbox = [];
  let wake = null, answered = "";
  ws.once("upgrade", (res) => { answered = res.headers["sec-websocket-extensions"] || ""; });
  ws.on("message", (data) => { inbox.push(JSON.parse(data.toString())); if (wake) wake(); });
  await new Promise((ok, fail) => { ws.once("open", ok); ws.once("error", fail); });
  check(ws.extensions == "permessage-deflate" && /server_no_context_takeover/.test(answered),
    `ws negotiated ${JSON.stringify(ws.extensions)}, the server answered ${JSON.stringify(answered)}`);
  const next = async (type) => {
    const deadline = Date.now() + WAIT;
    for (;;) {
      const i = inbox.findIndex((f) => f.type == type);
      if (i >= 0) return inbox.splice(i, 1)[0];
      check(Date.now() < deadline, `no ${type} frame within ${WAIT} ms`);
      await new Promise((r) => { wake = r; setTimeout(r, 200); });
    }
  };
  await next("subscribed");

  // Chromium, on a page of the server's own origin.
  const browser = await launch();
  const errors = [];
  const page = await newPage(browser, errors);
  await page.goto(base + "/");
  const ext = await page.evaluate((url) => new Promise((ok, fail) => {
    const s = new WebSocket(url);
    window.got = [];
    s.onmessage = (e) => { const f = JSON.parse(e.data); if (f.type == "message") window.got.push(f.data.text); };
    s.onerror = () => fail("websocket error");
    s.onopen = () => { window.sock = s; };
    const t = setInterval(() => { if (s.readyState == 1) { clearInterval(t); setTimeout(() => ok(s.extensions), 200); } }, 20);
  }), url);
  check(/permessage-deflate/.test(ext) && /server_no_context_takeover/.test(ext), "Chromium negotiated " + JSON.stringify(ext));

  await publish(base, 1);
  await publish(base, 2);
  for (const n of [1, 2]) {
    const m = await next("message");
    check(m.data.text == text(n), `ws: message ${n} reads ${m.data.text.length} bytes, not what was published`);
  }
  await page.waitForFunction(() => window.got.length >= 2, null, { timeout: WAIT });
  const got = await page.evaluate(() => window.got);
  check(got[0] == text(1) && got[1] == text(2), "Chromium read other text than published");
  check(errors.length == 0, errors.join("\n"));
  await browser.close();
  ws.close(1000, "done");
  console.log(`compressed frames decode: ws (${answered}) and Chromium (${ext})`);
});
