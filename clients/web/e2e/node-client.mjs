// herald.js in Node, outside any browser. Usage:
//   node node-client.mjs BASE_URL API_KEY TOKEN_OF_ALICE
//
//  1. without a WebSocket global it fails once, at construction, with a
//     clear error (Node 20 has none);
//  2. with the ws package passed in it subscribes, receives, and reports
//     a refused channel through onError;
//  2b. a server-side subscription surfaces as "subscribed", "message" and
//     "unsubscribed" events;
//  3. a refused token (close 1008) ends it: one attempt, state "closed";
//  4. a token function gets a second chance after 1008; a kick (4004)
//     ends it even so;
//  5. a token function that returns the refused token again ends it.
import WebSocket from "ws";
import { check, main, WAIT } from "./lib.mjs";

const { Herald, HeraldError } = await import(new URL("../../js/herald.js", import.meta.url));

// until polls cond until it holds, failing after WAIT.
async function until(what, cond) {
  const deadline = Date.now() + WAIT;
  while (!cond()) {
    check(Date.now() < deadline, "timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

main(async ([base, key, token]) => {
  const url = base.replace(/^http/, "ws") + "/ws";
  const api = (path, body) =>
    fetch(base + path, { method: "POST", headers: { Authorization: "Bearer " + key, "Content-Type": "application/json" }, body: JSON.stringify(body) });

  // 1. No WebSocket global: one clear error, nothing scheduled.
  const global = globalThis.WebSocket;
  delete globalThis.WebSocket;
  let err;
  try {
    new Herald(url);
  } catch (e) {
    err = e;
  }
  check(err instanceof HeraldError && err.code == "no_websocket" && err.message.includes("ws package"), "without WebSocket: " + err);
  if (global) globalThis.WebSocket = global;

  // 2. ws passed in.
  const h = new Herald({ url, WebSocket, minBackoff: 20, maxBackoff: 100 });
  const got = [], refused = [];
  let subscribed = false;
  h.subscribe("chat:node", (d) => got.push(d), { onSubscribed: () => (subscribed = true) });
  h.subscribe("nope:x", () => {}, { onError: (e) => refused.push(e) });
  await until("the subscription", () => subscribed);
  const r = await api("/api/publish", { channel: "chat:node", data: { text: "from Node" } });
  check(r.ok, "publish: HTTP " + r.status);
  await until("the message and the refusal", () => got.length == 1 && refused.length == 1);
  check(got[0].text == "from Node", "message " + JSON.stringify(got));
  check(refused[0].code == "unknown_namespace" && refused[0].channel == "nope:x", "refusal " + refused[0]);
  h.close();

  // 2b. A server-side subscription (POST /api/subscribe) surfaces as
  // events, and ends with POST /api/unsubscribe.
  const srv = new Herald({ url, WebSocket, token, minBackoff: 20 });
  const ev = [];
  srv.on("subscribed", (e) => ev.push("subscribed " + e.channel));
  srv.on("message", (m) => ev.push("message " + m.channel + " " + m.data.text));
  srv.on("unsubscribed", (e) => ev.push("unsubscribed " + e.channel + " " + e.reason));
  await until("the connection for the server subscription", () => srv.state == "connected");
  const sub = await api("/api/subscribe", { user: "alice", channel: "chat:srv" });
  check(sub.ok, "server subscribe: HTTP " + sub.status);
  await until("the server's subscribed", () => ev.length == 1);
  const p2 = await api("/api/publish", { channel: "chat:srv", data: { text: "pushed" } });
  check(p2.ok, "publish: HTTP " + p2.status);
  await until("the message", () => ev.length == 2);
  const un = await api("/api/unsubscribe", { user: "alice", channel: "chat:srv" });
  check(un.ok, "server unsubscribe: HTTP " + un.status);
  await until("the server's unsubscribed", () => ev.length == 3);
  check(ev.join("|") == "subscribed chat:srv|message chat:srv pushed|unsubscribed chat:srv server", "server subscription events " + JSON.stringify(ev));
  srv.close();

  // 3. A refused token: closed for good after one attempt.
  const states = [];
  const bad = new Herald({ url, WebSocket, token: "not-a-jwt", minBackoff: 1, onState: (e) => states.push(e) });
  await until("the 1008 close", () => bad.state == "closed");
  const last = states[states.length - 1];
  check(last.code == 1008 && last.permanent && bad.closeCode == 1008 && bad.closeReason, "final state " + JSON.stringify(last));
  check(states.filter((s) => s.state == "connecting").length == 1, "attempts: " + JSON.stringify(states));

  // 4. A token function: a second chance after 1008; a kick is final.
  let calls = 0;
  const kicked = [];
  const k = new Herald({ url, WebSocket, minBackoff: 1, token: () => (++calls == 1 ? "stale" : token), onState: (e) => kicked.push(e) });
  await until("the connection with the fresh token", () => k.state == "connected");
  check(calls == 2, "token function called " + calls + " times, want 2");
  const d = await api("/api/disconnect", { user: "alice", reason: "bye" });
  check(d.ok, "disconnect: HTTP " + d.status);
  await until("the 4004 close", () => k.state == "closed");
  check(k.closeCode == 4004 && k.closeReason == "bye" && calls == 2, `after the kick: ${k.closeCode} ${k.closeReason}, ${calls} token calls`);

  // 5. The same refused token from the function: closed, saying so.
  const same = new Herald({ url, WebSocket, minBackoff: 1, token: () => "stale" });
  await until("the end", () => same.state == "closed");
  check(same.closeCode == 1008 && same.closeReason.includes("refused"), `${same.closeCode} ${same.closeReason}`);
  console.log("node: no WebSocket fails once; ws passed in; refusals; 1008 and 4004 end the client");
});
