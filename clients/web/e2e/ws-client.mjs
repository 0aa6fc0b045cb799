// Node's ws package as a third-party client, using nothing but the
// documented protocol: welcome, subscribe, message, publish and its ack,
// an error reply. Usage: node ws-client.mjs BASE_URL
import WebSocket from "ws";
import { check, main } from "./lib.mjs";

main(async ([base]) => {
  const ws = new WebSocket(base.replace(/^http/, "ws") + "/ws");
  const inbox = [], joins = [];
  let wake = null;
  ws.on("message", (data) => {
    const f = JSON.parse(data.toString());
    if (f.type == "ping") return ws.send(JSON.stringify({ type: "pong" }));
    if (f.type == "join" || f.type == "leave") return joins.push(f); // chat keeps presence
    inbox.push(f);
    if (wake) wake();
  });
  // next returns the next frame, failing after a deadline.
  const next = async () => {
    const deadline = Date.now() + 10000;
    while (!inbox.length) {
      check(Date.now() < deadline, "no frame from the server within 10 s");
      await new Promise((r) => { wake = r; setTimeout(r, 200); });
    }
    return inbox.shift();
  };
  await new Promise((ok, fail) => { ws.once("open", ok); ws.once("error", fail); });

  const welcome = await next();
  check(welcome.type == "welcome" && welcome.client && welcome.heartbeat_ms > 0, "first frame " + JSON.stringify(welcome));

  ws.send(JSON.stringify({ type: "subscribe", id: 1, channel: "chat:ws" }));
  const sub = await next();
  check(sub.type == "subscribed" && sub.id == 1 && sub.channel == "chat:ws" && sub.epoch, "subscribe reply " + JSON.stringify(sub));

  const r = await fetch(base + "/api/publish", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ channel: "chat:ws", data: { text: "from HTTP" } }) });
  check(r.ok, `HTTP publish: ${r.status}`);
  const m1 = await next();
  check(m1.type == "message" && m1.channel == "chat:ws" && m1.data.text == "from HTTP" && m1.offset == sub.offset + 1, "message " + JSON.stringify(m1));

  ws.send(JSON.stringify({ type: "publish", id: 2, channel: "chat:ws", data: { text: "from ws" } }));
  const frames = [await next(), await next()]; // the ack and our own message, in either order
  const ack = frames.find((f) => f.type == "ack");
  const m2 = frames.find((f) => f.type == "message");
  check(ack && ack.id == 2 && ack.offset == m1.offset + 1 && ack.epoch == m1.epoch, "ack " + JSON.stringify(frames));
  check(m2 && m2.data.text == "from ws" && m2.offset == ack.offset, "own message " + JSON.stringify(frames));

  ws.send(JSON.stringify({ type: "publish", id: 3, channel: "stocks:AAPL", data: 1 }));
  const err = await next();
  check(err.type == "error" && err.id == 3 && err.code == "forbidden" && err.message, "error reply " + JSON.stringify(err));

  check(joins.some((f) => f.type == "join" && f.client == welcome.client), "no join frame for ourselves: " + JSON.stringify(joins));

  const closed = new Promise((r) => ws.once("close", (code) => r(code)));
  ws.close(1000, "done");
  check((await closed) == 1000, "close code");
  console.log("ws: welcome, subscribe, message, publish ack, error, close");
});
