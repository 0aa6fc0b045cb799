// herald.js: the browser client for Herald's WebSocket protocol
// (docs/protocol.md). One ES module, no dependencies, no build step; the
// server serves it at /herald.js.
//
//   import { Herald } from "/herald.js";
//   const h = new Herald();                       // ws(s)://<this host>/ws
//   h.subscribe("stocks:AAPL", (data, msg) => show(data), {
//     onReset: () => reloadPrices(),              // messages were lost: reload state
//   });
//   await h.publish("chat:lobby", { text: "hi" }); // resolves with the ack
//
// The client keeps one connection up: it reconnects with jittered
// exponential backoff and resubscribes every channel with `since` set to the
// last position it saw, so nothing published meanwhile is missed while it is
// still in the channel's history. When the server cannot recover (history
// window passed, new epoch), the subscription's onReset says so.
//
// Closes that retrying cannot fix end the client instead of looping
// (docs/protocol.md, "Close codes"): 4004 (disconnected by the server),
// and 1008 (token refused, user banned) or 4003 (token expired) unless
// the token option is a function that returns a different token. The
// state then becomes "closed" with the code and reason.
//
// Outside browsers, pass a WebSocket implementation where there is no
// global one (Node before 22): new Herald({url, WebSocket}) with
// `import WebSocket from "ws"`.
//
// new Herald({shared: true}) shares one WebSocket among the tabs of an
// origin: the connection lives in a SharedWorker (herald-worker.js, next to
// this file), and this tab talks to it over a port in the same protocol,
// through sharedSocket below. Everything else in this file (resume, dedup,
// requests, tokens) then works unchanged; the worker counts the tabs of each
// channel. Without SharedWorker, one connection per tab as usual.

// PERMANENT are the close codes after which reconnecting with the same
// token cannot help (docs/protocol.md, "Close codes").
const PERMANENT = new Set([1008, 4003, 4004]);

/** An error frame from the server, or a request that could not complete. */
export class HeraldError extends Error {
  constructor(code, message, channel) {
    super(message);
    this.name = "HeraldError";
    this.code = code;
    this.channel = channel;
  }
}

// wsURL turns "", "/ws", "http(s)://..." or "ws(s)://..." into a WebSocket URL.
function wsURL(u) {
  const loc = globalThis.location;
  const url = new URL(u || "/ws", loc && loc.href);
  url.protocol = url.protocol.replace(/^http/, "ws");
  return url.href;
}

export class Herald {
  /**
   * @param {object|string} [opts] options, or just the URL
   */
  constructor(opts = {}) {
    if (typeof opts == "string") opts = { url: opts };
    // Fail once, here, rather than on every reconnect.
    this._WebSocket = opts.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket != "function") {
      throw new HeraldError("no_websocket", "herald.js: no WebSocket in this environment: pass one, e.g. new Herald({ url, WebSocket }) with WebSocket from the ws package");
    }
    this.url = wsURL(opts.url);
    if (opts.shared && typeof SharedWorker == "function") {
      try {
        this._WebSocket = sharedSocket(this, opts.worker);
      } catch {
        // A worker URL of another origin (herald.js imported from the push
        // server's host) throws: keep the tab's own connection.
      }
    }
    this.token = opts.token; // a string, or a function returning one (or a Promise of one)
    this.minBackoff = opts.minBackoff || 250;
    this.maxBackoff = opts.maxBackoff || 10000;
    this.timeout = opts.timeout || 10000;
    this.state = "disconnected";
    this.client = this.node = null;
    this._subs = new Map(); // channel -> subscription
    this._wait = new Map(); // request id -> {ok, fail, frame, sent, timer}
    this._subIds = new Map(); // subscribe id -> channel, to route its error
    this._on = {};
    this._id = 0;
    this._tries = 0;
    this._closed = false;
    this._ready = false;
    if (opts.onState) this.on("state", opts.onState);
    // Connect after the caller had a chance to add listeners.
    queueMicrotask(() => this._connect());
    if (globalThis.addEventListener) {
      // Back online: do not wait for the backoff timer.
      this._online = () => this._retryNow && this._retryNow();
      addEventListener("online", this._online);
    }
  }

  /**
   * Listens to "state" ({state, code, reason}), "connected" (the welcome
   * frame), "disconnected" ({code, reason, wasClean}), "error" (HeraldError),
   * and for server-side subscriptions (POST /api/subscribe, the token's subs
   * claim) "subscribed" ({channel, frame}), "message" (msg) and
   * "unsubscribed" ({channel, reason}).
   * Returns a function that removes the listener.
   */
  on(event, fn) {
    (this._on[event] ||= new Set()).add(fn);
    return () => this._on[event].delete(fn);
  }

  _emit(event, arg) {
    for (const fn of this._on[event] || []) {
      try {
        fn(arg);
      } catch (e) {
        setTimeout(() => { throw e; }); // report, but keep the client running
      }
    }
  }

  _state(state, info = {}) {
    this.state = state;
    this._emit("state", { state, ...info });
  }

  /**
   * Subscribes to channel; onMessage(data, msg) gets every message, in order.
   * opts: since {epoch, offset}, maxRate (at most that many messages per
   * second, the newest winning; msg.skipped counts those left out),
   * onSubscribed(info), onReset(position),
   * onJoin(member), onLeave(member), onError(HeraldError), onUnsubscribed(reason).
   */
  subscribe(channel, onMessage, opts = {}) {
    const had = this._subs.get(channel);
    if (had && had.server) {
      // The server subscribed this connection already: take it over.
      Object.assign(had, { onMessage, opts, server: false });
      return { channel, unsubscribe: () => this.unsubscribe(channel), get position() { return had.pos; } };
    }
    if (had) throw new HeraldError("already_subscribed", "already subscribed to " + channel, channel);
    const sub = { channel, onMessage, opts, pos: opts.since || null };
    this._subs.set(channel, sub);
    if (this._ready) this._sendSubscribe(sub);
    return {
      channel,
      unsubscribe: () => this.unsubscribe(channel),
      get position() { return sub.pos; },
    };
  }

  unsubscribe(channel) {
    if (this._subs.delete(channel) && this._ready) this._send({ type: "unsubscribe", channel });
  }

  /** Publishes data (any JSON) to channel; resolves with {channel, epoch, offset}. */
  publish(channel, data) {
    return this._request({ type: "publish", channel, data });
  }

  /** Reads channel's history: opts {since, limit}; resolves with {epoch, offset, complete, messages}. */
  history(channel, opts = {}) {
    return this._request({ type: "history", channel, ...opts });
  }

  /** Asks who is subscribed to channel (namespaces with presence). */
  presence(channel) {
    return this._request({ type: "presence", channel });
  }

  /** Closes the connection for good; pending requests are rejected. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._retry);
    if (this._online) removeEventListener("online", this._online);
    const ws = this._ws;
    this._drop();
    if (ws) ws.close(1000, "client closing");
    if (this._bye) this._bye();
    for (const id of this._wait.keys()) this._settle(id, new HeraldError("closed", "client closed"));
    this._state("closed", { code: 1000, reason: "client closing" });
  }

  _request(frame) {
    if (this._closed) return Promise.reject(new HeraldError("closed", "client closed"));
    const id = ++this._id;
    frame.id = id;
    return new Promise((ok, fail) => {
      const w = { ok, fail, frame, sent: false };
      w.timer = setTimeout(() => this._settle(id, new HeraldError("timeout", frame.type + " timed out", frame.channel)), this.timeout);
      this._wait.set(id, w);
      // Requests made while disconnected go out once the next connection is up.
      if (this._ready) this._flush(id, w);
    });
  }

  _flush(id, w) {
    w.sent = true;
    this._send(w.frame);
  }

  _settle(id, err, value) {
    const w = this._wait.get(id);
    if (!w) return;
    this._wait.delete(id);
    clearTimeout(w.timer);
    err ? w.fail(err) : w.ok(value);
  }

  _send(frame) {
    this._ws.send(JSON.stringify(frame));
  }

  _sendSubscribe(sub) {
    const id = ++this._id;
    this._subIds.set(id, sub.channel);
    const f = { type: "subscribe", id, channel: sub.channel };
    if (sub.pos) f.since = sub.pos;
    if (sub.opts.maxRate) f.max_rate = sub.opts.maxRate;
    this._send(f);
  }

  async _connect() {
    if (this._closed) return;
    this._state("connecting");
    let url = this.url;
    let t;
    try {
      t = typeof this.token == "function" ? await this.token() : this.token;
      if (t) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(t);
    } catch (e) {
      return this._down(0, "token: " + e.message, false);
    }
    if (this._closed) return;
    const refused = this._refused;
    if (refused && t === refused.token) {
      return this._end(refused.code, "the token function returned the token the server refused: " + refused.reason);
    }
    let ws;
    try {
      ws = this._ws = new this._WebSocket(url);
    } catch (e) {
      return this._down(0, e.message, false); // a malformed URL: keep retrying, report it
    }
    ws.onmessage = (e) => this._ws == ws && this._data(e.data);
    ws.onclose = (e) => this._ws == ws && (this._drop(), this._down(e.code, e.reason, e.wasClean, t));
  }

  // _drop forgets the current socket: its later events are ignored.
  _drop() {
    clearInterval(this._watch);
    this._ws = null;
    this._ready = false;
    this._subIds.clear();
  }

  _down(code, reason, wasClean, token) {
    // Sent requests may or may not have been applied: the caller decides.
    for (const [id, w] of this._wait) if (w.sent) this._settle(id, new HeraldError("disconnected", "connection lost before the reply", w.frame.channel));
    if (this._closed) return;
    const info = { code, reason, wasClean };
    this._state("disconnected", info);
    this._emit("disconnected", info);
    if (PERMANENT.has(code)) {
      // Only a token function can do better than the refused token, and
      // only for 1008 and 4003; a kick (4004) is final.
      if (code == 4004 || typeof this.token != "function") return this._end(code, reason);
      this._refused = { code, reason, token };
    }
    if (Date.now() - this._upAt > 5000) this._tries = 0; // it was up a while: retry fast
    // Full jitter spreads the reconnects of many clients after an outage.
    const max = Math.min(this.maxBackoff, this.minBackoff * 2 ** this._tries++);
    const delay = max / 2 + (Math.random() * max) / 2;
    this._retryNow = () => {
      this._retryNow = null;
      clearTimeout(this._retry);
      this._connect();
    };
    this._retry = setTimeout(this._retryNow, delay);
  }

  // _end stops for good after a close that retrying cannot fix, and says why.
  _end(code, reason) {
    this._closed = true;
    clearTimeout(this._retry);
    if (this._online) removeEventListener("online", this._online);
    for (const id of this._wait.keys()) this._settle(id, new HeraldError("closed", `closed by the server: ${code} ${reason}`));
    if (this._bye) this._bye();
    this.closeCode = code;
    this.closeReason = reason;
    this._state("closed", { code, reason, permanent: true });
  }

  _data(text) {
    this._seen = Date.now();
    // One JSON object per frame, or several separated by "\n" (batch mode).
    for (const line of text.split("\n")) {
      let f;
      try {
        f = JSON.parse(line);
      } catch {
        continue;
      }
      this._frame(f);
    }
  }

  _frame(f) {
    let sub = this._subs.get(f.channel);
    const o = sub ? sub.opts : {};
    const pos = { epoch: f.epoch, offset: f.offset };
    switch (f.type) {
      case "ping":
        return this._send({ type: "pong" });
      case "welcome":
        return this._welcome(f);
      case "message": {
        if (!sub) return;
        const p = sub.pos;
        // A snapshot is the latest message, at or before the subscribe
        // position: always shown, never a duplicate.
        if (!f.snapshot && p && p.epoch == f.epoch && f.offset <= p.offset) return;
        if (!p || p.epoch != f.epoch || f.offset > p.offset) sub.pos = pos;
        return sub.onMessage(f.data, f);
      }
      case "subscribed": {
        this._subIds.delete(+f.id);
        if (!sub && f.server) {
          // Subscribed by the backend: kept like one of ours (a reconnect
          // resubscribes it from its position), its messages emitted.
          sub = { channel: f.channel, onMessage: (d, m) => this._emit("message", m), opts: {}, pos, server: true };
          this._subs.set(f.channel, sub);
          return this._emit("subscribed", { channel: f.channel, frame: f });
        }
        if (!sub) return;
        const lost = f.recovered === false;
        if (lost || !sub.pos) sub.pos = pos;
        if (lost && o.onReset) o.onReset(pos, f);
        return o.onSubscribed && o.onSubscribed({ ...pos, recovered: f.recovered !== false, frame: f });
      }
      case "unsubscribed":
        // "resubscribe": the server lost messages; a subscribed frame with
        // recovered:false follows at once and the subscription stays.
        if (sub && (f.server || (f.reason && f.reason != "resubscribe"))) {
          this._subs.delete(f.channel);
          const reason = f.reason || "server";
          if (sub.server) this._emit("unsubscribed", { channel: f.channel, reason });
          else o.onUnsubscribed && o.onUnsubscribed(reason);
        }
        return;
      case "join":
      case "leave": {
        const fn = f.type == "join" ? o.onJoin : o.onLeave;
        return fn && fn({ client: f.client, user: f.user, info: f.info }, f);
      }
    }
    const err = f.type == "error" && new HeraldError(f.code, f.message, f.channel);
    const ch = this._subIds.get(+f.id);
    if (err && ch != null) return this._subError(ch, err);
    if (this._wait.has(+f.id)) return this._settle(+f.id, err, f);
    if (err) this._emit("error", err);
  }

  _welcome(f) {
    this._ready = true;
    this._refused = null; // the fresh token was taken
    this._upAt = Date.now();
    this.client = f.client;
    this.node = f.node;
    const hb = f.heartbeat_ms;
    if (hb > 0) {
      // The server pings every hb ms: three silent intervals mean a dead
      // path (a proxy that dropped us, a laptop that slept). Closing a
      // socket on a dead path can take a minute in a browser, so the
      // client drops it at once and reconnects.
      this._watch = setInterval(() => {
        if (Date.now() - this._seen > 3 * hb) {
          const ws = this._ws;
          this._drop();
          ws.close(1000, "heartbeat timeout");
          this._down(1006, "heartbeat timeout: the server was silent for 3 intervals", false);
        }
      }, hb);
    }
    this._state("connected");
    this._emit("connected", f);
    for (const sub of this._subs.values()) this._sendSubscribe(sub);
    for (const [id, w] of this._wait) if (!w.sent) this._flush(id, w);
  }

  _subError(channel, err) {
    const sub = this._subs.get(channel);
    if (!sub) return;
    if (err.code == "unavailable") {
      // The broker is down for now: try this subscription again.
      setTimeout(() => this._ready && this._subs.get(channel) == sub && this._sendSubscribe(sub), this.minBackoff * 4);
    } else if (err.code != "already_subscribed") {
      this._subs.delete(channel);
    }
    if (sub.opts.onError) sub.opts.onError(err);
    else this._emit("error", err);
  }
}

// sharedSocket starts (or joins) the origin's shared worker and returns a
// WebSocket look-alike class: each instance is one connection to the worker
// over this tab's port, which the worker answers as the server would.
function sharedSocket(h, url) {
  const WS = h._WebSocket;
  const w = new SharedWorker(url || new URL("./herald-worker.js", import.meta.url), { type: "module", name: "herald " + h.url });
  const port = w.port;
  const lock = "herald " + Math.random();
  const locks = globalThis.navigator && navigator.locks;
  let cur;
  // The tab holds a lock until it is gone (closed, crashed, navigated
  // away): the worker, told its name once it is held, waits on it to drop
  // this tab's subscriptions, since a port says nothing when its tab dies.
  // pagehide is the fallback.
  if (locks) locks.request(lock, () => (port.postMessage({ lock }), new Promise((r) => (h._unlock = r))));
  const bye = () => port.postMessage({ bye: 1 });
  // A page restored from the back-forward cache was dropped by the worker
  // at pagehide: reconnect, resuming with since.
  const back = (e) => e.persisted && cur && cur.onclose({ code: 1006, reason: "page restored", wasClean: false });
  addEventListener("pagehide", bye);
  addEventListener("pageshow", back);
  h._bye = () => {
    bye();
    removeEventListener("pagehide", bye);
    removeEventListener("pageshow", back);
    if (h._unlock) h._unlock();
    port.close();
  };
  port.onmessage = (e) => cur && (typeof e.data == "string" ? cur.onmessage(e) : cur.onclose(e.data));
  // The worker could not start (module workers unsupported): per tab.
  w.onerror = () => {
    h._WebSocket = WS;
    if (cur) cur.onclose({ code: 1006, reason: "shared worker failed: one connection per tab", wasClean: false });
  };
  return class {
    constructor(u) {
      cur = this;
      port.postMessage({ connect: u, minBackoff: h.minBackoff, maxBackoff: h.maxBackoff, timeout: h.timeout });
    }
    send(text) {
      port.postMessage(text);
    }
    close() {
      bye();
    }
  };
}

export default Herald;
