// herald-worker.js: the SharedWorker behind new Herald({shared: true}).
// One per origin and server URL; it holds the one WebSocket of all the
// tabs (a Herald of its own, so reconnect, backoff, heartbeats and resume
// with since are herald.js's), and answers each tab over its port in the
// server's protocol (docs/protocol.md), so the tab's Herald runs unchanged.
//
// Per channel it keeps one server subscription and the tabs on it: the
// first tab's subscribe goes to the server; later tabs are answered here at
// the channel's current position (their since, if older, is filled from
// history), and every message goes to every tab on the channel. A channel
// no tab wants is unsubscribed after LINGER ms of a live connection, so
// tabs coming back after a reconnect do not churn it.
//
// A tab is gone when it says so (close(), pagehide) or when the Web Lock
// it holds while alive is released (a closed or crashed tab says nothing).
//
// The connection's state is the tabs': when it drops, every tab is
// disconnected with the same code and reason, and each reconnects to the
// worker, which welcomes it once the server is back; the tab then
// resubscribes with its own since as it would with the server itself.
// Tokens: every tab sends its token (or its token function's answer) at
// each of its connects; the worker connects with the newest one. After a
// refused token (1008, 4003) it waits for a tab to bring a different one.
import { Herald } from "./herald.js";

const LINGER = 1000;

let up; // the shared connection (a Herald), made by the first tab
let welcome; // the welcome frame for tabs while up is connected, else null
let token = null; // the newest token a tab sent
let used; // the token of the current or last connect
let refused; // set to used when the server refused it
let wake; // resolves a connect waiting for a new token
const tabs = new Set(); // tabs that connected and did not leave: {port, open, want, subs}
const chans = new Map(); // channel -> {sub, pos, tabs: Map(tab -> entry), last, snap, idle}

onconnect = (e) => {
  const tab = { port: e.ports[0], open: false, want: false, subs: new Set() };
  tab.port.onmessage = (m) => fromTab(tab, m.data);
};

function fromTab(tab, d) {
  if (typeof d == "string") {
    let f;
    try {
      f = JSON.parse(d);
    } catch {
      return;
    }
    return tab.open && command(tab, f);
  }
  if (d.bye) return bye(tab);
  if (d.lock && !tab.lock && navigator.locks) {
    // The tab holds this lock (it says so once granted, so this request
    // queues behind its own): granted to the worker when the tab is gone.
    tab.lock = d.lock;
    navigator.locks.request(d.lock, () => bye(tab));
  }
  if (!d.connect) return;
  const t = (tab.token = new URL(d.connect).searchParams.get("token"));
  if (t) token = t;
  if (wake && token !== refused) {
    wake((used = token));
    wake = null;
  }
  if (!up || up.state == "closed") start(d);
  tab.want = true;
  tabs.add(tab);
  if (welcome) open(tab);
}

// start opens the shared connection with the first tab's URL and options.
function start(d) {
  const url = new URL(d.connect);
  url.searchParams.delete("token");
  used = refused = undefined;
  up = new Herald({
    url: url.href,
    minBackoff: d.minBackoff,
    maxBackoff: d.maxBackoff,
    timeout: d.timeout,
    token: () => (refused !== undefined && token === refused ? new Promise((r) => (wake = r)) : (used = token)),
  });
  const h = up;
  h.on("connected", (f) => {
    refused = undefined;
    // The worker answers the server's pings; a tab has no watchdog to feed.
    const { heartbeat_ms, ...w } = f;
    welcome = JSON.stringify({ ...w, shared: true });
    // Tabs get their backoff's worth of time to take their channels back.
    for (const c of chans.values()) if (c.idle) c.idle = Date.now() + h.maxBackoff;
    for (const tab of tabs) if (tab.want && !tab.open) open(tab);
    sweepSoon();
  });
  h.on("disconnected", (e) => {
    welcome = null;
    const refusal = e.code == 1008 || e.code == 4003;
    if (refusal) refused = used ?? null;
    // A tab still waiting with the refused token is told too: only it can
    // bring another.
    for (const tab of tabs) if (tab.open || (refusal && tab.want && tab.token === refused)) close(tab, e);
    // The Herald resubscribes each channel with since; tabs coming back
    // wait for that answer and join at the position it gives.
    for (const c of chans.values()) c.pos = null;
  });
  h.on("state", (e) => {
    if (e.state != "closed" || up != h) return;
    // A new connection starts afresh: with the token of a tab that brings one.
    up = welcome = token = null;
    chans.clear();
    for (const tab of tabs) close(tab, e);
  });
  // An error frame that answers nothing: every tab's Herald reports it.
  h.on("error", (err) => {
    const f = JSON.stringify({ type: "error", code: err.code, message: err.message, channel: err.channel });
    for (const tab of tabs) if (tab.open) tab.port.postMessage(f);
  });
}

function open(tab) {
  tab.open = true;
  tab.port.postMessage(welcome);
}

// close ends a tab's connection to the worker as the server's close did.
// The tab stays in tabs: it reconnects. A refused token (1008, 4003)
// ends a tab only if it was the tab's own (as it would alone); a tab
// without a token, or with another one, gets 1006 and comes back, bringing
// its token.
function close(tab, e) {
  release(tab);
  tab.open = tab.want = false;
  let { code, reason } = e;
  if ((code == 1008 || code == 4003) && tab.token !== refused) {
    reason = `shared connection closed ${code}: ${reason}`;
    code = 1006;
  }
  tab.port.postMessage({ code, reason, wasClean: !!e.wasClean });
}

function bye(tab) {
  release(tab);
  tab.open = tab.want = false;
  tabs.delete(tab);
  sweepSoon();
}

function send(tab, f) {
  tab.port.postMessage(JSON.stringify(f));
}

function command(tab, f) {
  switch (f.type) {
    case "pong":
      return;
    case "subscribe":
      return subscribe(tab, f);
    case "unsubscribe":
      leave(tab, f.channel);
      return send(tab, { type: "unsubscribed", id: f.id, channel: f.channel });
  }
  // publish, history, presence, auth and anything newer: one request on the
  // shared connection, its answer (or error) back with the tab's id.
  const { id, ...req } = f;
  up._request(req).then(
    (r) => send(tab, { ...r, id }),
    (err) => send(tab, { type: "error", id, code: err.code, message: err.message, channel: err.channel }),
  );
}

function subscribe(tab, f) {
  const ch = f.channel;
  let c = chans.get(ch);
  const e = c && c.tabs.get(tab);
  if (e) {
    // The tab retries after "unavailable": still waiting, or already on.
    e.id = f.id;
    if (e.live) send(tab, { type: "subscribed", id: f.id, channel: ch, ...c.pos });
    return;
  }
  const first = !c;
  if (first) {
    try {
      c = newChannel(ch, f);
    } catch (err) {
      return send(tab, { type: "error", id: f.id, code: err.code || "bad_request", message: err.message, channel: ch });
    }
  }
  // The first tab's since went to the server: the answer is its own.
  const entry = { id: f.id, since: f.since, first, live: false, buf: null };
  c.tabs.set(tab, entry);
  c.idle = 0;
  tab.subs.add(ch);
  if (c.pos) join(c, tab, entry);
}

// newChannel subscribes ch on the shared connection with the first tab's
// since and max_rate; the others share what it gets.
function newChannel(ch, f) {
  const c = { tabs: new Map(), pos: null, last: null, snap: false, idle: 0 };
  const each = (fn) => {
    for (const [tab, e] of c.tabs) fn(tab, e);
  };
  c.sub = up.subscribe(ch, (data, m) => fanout(c, m), {
    since: f.since,
    maxRate: f.max_rate,
    onSubscribed: (info) => {
      const fr = info.frame;
      const waiting = !c.pos;
      c.pos = { epoch: fr.epoch, offset: fr.offset };
      if (!waiting) {
        // The server reset the subscription or it resumed after a
        // reconnect: every tab on it learns the outcome.
        const { id, ...rest } = fr;
        const text = JSON.stringify(rest);
        return each((tab, e) => e.live && tab.port.postMessage(text));
      }
      each((tab, e) => {
        if (!e.first) return join(c, tab, e);
        e.first = false;
        e.live = true;
        send(tab, { ...fr, id: e.id });
      });
    },
    onJoin: (m, fr) => presence(c, fr),
    onLeave: (m, fr) => presence(c, fr),
    onError: (err) => {
      const gone = err.code != "unavailable";
      if (gone) drop(c, ch);
      each((tab, e) => {
        if (!e.live) send(tab, { type: "error", id: e.id, code: err.code, message: err.message, channel: ch });
        else if (gone) send(tab, { type: "unsubscribed", channel: ch, reason: err.code });
      });
    },
    onUnsubscribed: (reason) => {
      drop(c, ch);
      each((tab) => send(tab, { type: "unsubscribed", channel: ch, reason }));
    },
  });
  chans.set(ch, c);
  return c;
}

function drop(c, ch) {
  if (chans.get(ch) == c) chans.delete(ch);
  for (const tab of c.tabs.keys()) tab.subs.delete(ch);
}

// join answers a tab's subscribe on a channel that is already subscribed,
// as the server would: subscribed at the channel's position, then what the
// tab missed since its since (from history), or the snapshot.
function join(c, tab, e) {
  const pos = { ...c.pos };
  const ok = { type: "subscribed", id: e.id, channel: c.sub.channel, ...pos };
  const s = e.since;
  if (!s) {
    e.live = true;
    send(tab, ok);
    if (c.snap && c.last) send(tab, { ...c.last, snapshot: true });
    return;
  }
  if (s.epoch != pos.epoch || s.offset >= pos.offset) {
    e.live = true;
    return send(tab, { ...ok, recovered: s.epoch == pos.epoch && s.offset == pos.offset });
  }
  // Live messages wait in buf while history brings since..now; the tab's
  // Herald drops the overlap by offset.
  e.buf = [];
  const done = (msgs) => {
    if (c.tabs.get(tab) != e) return;
    send(tab, { ...ok, recovered: !!msgs });
    for (const m of msgs || []) send(tab, { type: "message", channel: ok.channel, ...m });
    for (const text of e.buf) tab.port.postMessage(text);
    e.buf = null;
    e.live = true;
  };
  up.history(ok.channel, { since: s, limit: 1000 }).then(
    (h) => done(h.complete && h.epoch == s.epoch ? h.messages : null),
    () => done(null),
  );
}

function fanout(c, m) {
  if (m.snapshot) c.snap = true;
  if (c.snap) c.last = m;
  if (!c.pos || m.epoch != c.pos.epoch || m.offset > c.pos.offset) c.pos = { epoch: m.epoch, offset: m.offset };
  const text = JSON.stringify(m);
  for (const [tab, e] of c.tabs) {
    if (e.buf) e.buf.push(text);
    else if (e.live) tab.port.postMessage(text);
  }
}

function presence(c, fr) {
  const text = JSON.stringify(fr);
  for (const [tab, e] of c.tabs) if (e.live) tab.port.postMessage(text);
}

function leave(tab, ch) {
  const c = chans.get(ch);
  tab.subs.delete(ch);
  if (!c || !c.tabs.delete(tab) || c.tabs.size) return;
  c.idle = Date.now();
  sweepSoon();
}

function release(tab) {
  for (const ch of [...tab.subs]) leave(tab, ch);
}

// sweepSoon unsubscribes, LINGER ms from now, the channels no tab has
// wanted for LINGER ms, but only while connected: tabs reconnecting after a
// drop take theirs back first. With no tab left (every one closed its
// Herald, but some page still holds the worker), it closes the connection.
let sweeping;
function sweepSoon() {
  if (sweeping) return;
  sweeping = setTimeout(() => {
    sweeping = null;
    if (!up) return;
    if (!tabs.size) {
      const h = up;
      up = welcome = token = null;
      chans.clear();
      return h.close();
    }
    if (up.state != "connected") return;
    let more = false;
    for (const [ch, c] of chans) {
      if (c.tabs.size || !c.idle) continue;
      if (Date.now() - c.idle < LINGER) more = true;
      else {
        chans.delete(ch);
        c.sub.unsubscribe();
      }
    }
    if (more) sweepSoon();
  }, LINGER);
}
