// A web page cannot use a keyless node's publisher API. Usage:
//   node keyless.mjs HERALD_BASE FOREIGN_BASE HERALD_PORT
//
// The node runs without api_key; the Go test serves FOREIGN_BASE (a page on
// another origin, reached as evil.example) and has a subscriber, with a
// token for the user alice, on "news".
//  1. From the foreign page, everything a page can send without CORS: a
//     text/plain form (the JSON-in-a-form trick), no-cors fetches
//     (text/plain, form-encoded, multipart) to /api/publish and
//     /api/disconnect, a beacon; a CORS fetch with JSON fails its preflight.
//  2. DNS rebinding: the node's own page reached as evil.example (mapped
//     to 127.0.0.1) is same-origin with it and still refused (403).
//  3. Control: the node's own page at HERALD_BASE publishes with JSON (200).
// Then the Go test checks that the subscriber got only the control message
// and was not disconnected.
import { chromium } from "playwright-core";
import { step, check, main, WAIT } from "./lib.mjs";

main(async ([herald, foreign, port]) => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic",
      "--host-resolver-rules=MAP evil.example 127.0.0.1",
    ],
  });
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(WAIT);

  // 1. The foreign page.
  await page.goto(foreign + "/");
  const sent = await page.evaluate(async (herald) => {
    const out = [];
    const attack = (n) => JSON.stringify({ channel: "news", data: "attack-" + n });
    const noCors = async (path, type, body, n) => {
      try {
        const r = await fetch(herald + path, { method: "POST", mode: "no-cors", headers: { "Content-Type": type }, body });
        out.push(`${n}: no-cors ${type} sent (${r.type})`);
      } catch (e) {
        out.push(`${n}: no-cors ${type} failed: ${e.message}`);
      }
    };
    await noCors("/api/publish", "text/plain", attack(1), 1);
    await noCors("/api/publish", "application/x-www-form-urlencoded", attack(2), 2);
    await noCors("/api/disconnect", "text/plain", JSON.stringify({ user: "alice" }), 3);
    const fd = new FormData();
    fd.append("channel", "news");
    fd.append("data", "attack-4");
    try {
      await fetch(herald + "/api/publish", { method: "POST", mode: "no-cors", body: fd });
      out.push("4: multipart sent");
    } catch (e) {
      out.push("4: multipart failed: " + e.message);
    }
    out.push("5: beacon queued " + navigator.sendBeacon(herald + "/api/publish", attack(5)));
    try {
      await fetch(herald + "/api/publish", { method: "POST", headers: { "Content-Type": "application/json" }, body: attack(6) });
      out.push("6: CORS JSON fetch was answered: FAIL");
    } catch (e) {
      out.push("6: CORS JSON fetch refused by the browser (preflight): " + e.message);
    }
    // The classic form: enctype text/plain makes name=value a JSON body.
    const frame = document.createElement("iframe");
    frame.name = "sink";
    document.body.append(frame);
    const loaded = new Promise((ok) => frame.addEventListener("load", ok, { once: true }));
    const form = document.createElement("form");
    form.method = "POST";
    form.action = herald + "/api/publish";
    form.enctype = "text/plain";
    form.target = "sink";
    const input = document.createElement("input");
    input.name = '{"channel":"news","data":"attack-7","x":"';
    input.value = '"}';
    form.append(input);
    document.body.append(form);
    form.submit();
    await loaded;
    out.push("7: text/plain form submitted");
    // And a disconnect through a form.
    const loaded2 = new Promise((ok) => frame.addEventListener("load", ok, { once: true }));
    input.name = '{"user":"alice","x":"';
    form.action = herald + "/api/disconnect";
    form.submit();
    await loaded2;
    out.push("8: disconnect form submitted");
    return out;
  }, herald);
  for (const s of sent) console.log("foreign page: " + s);
  check(sent.some((s) => s.startsWith("6: CORS JSON fetch refused")), "a CORS JSON fetch from a foreign page was answered");

  // 2. DNS rebinding: the node's own page under the attacker's name.
  await page.goto(`http://evil.example:${port}/`);
  const rebound = await page.evaluate(async () => {
    const r = await fetch("/api/publish", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ channel: "news", data: "attack-9" }) });
    return r.status + " " + (await r.text());
  });
  console.log("rebound page: " + rebound);
  check(rebound.startsWith("403 "), "a page rebound to 127.0.0.1 got " + rebound);

  // 3. Control: the node's own page, same origin, JSON.
  await page.goto(herald + "/");
  const own = await page.evaluate(async () => {
    const r = await fetch("/api/publish", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ channel: "news", data: "control" }) });
    return r.status + " " + (await r.text());
  });
  console.log("own page: " + own);
  check(own.startsWith("200 "), "the node's own page could not publish: " + own);
  await step("check");
  await browser.close();
});
