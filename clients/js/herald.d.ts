// Types for herald.js, the browser client for Herald's WebSocket protocol.

/** A place in a channel's stream. */
export interface Position {
  epoch: string;
  offset: number;
}

/** A "message" frame as the server sent it. */
export interface Message<T = unknown> extends Position {
  type: "message";
  channel: string;
  data: T;
  /** Publish time, Unix milliseconds. */
  ts?: number;
  /** True for the latest message sent on subscribe (namespaces with snapshot). */
  snapshot?: boolean;
  /**
   * Messages of this channel this subscriber did not get since the last one
   * it got (maxRate, or a conflate namespace on a slow link); absent when 0.
   * The offset jumps by skipped + 1.
   */
  skipped?: number;
}

export type State = "connecting" | "connected" | "disconnected" | "closed";

export interface StateEvent {
  state: State;
  /** WebSocket close code (1001 server going away, 4001 slow consumer, 1006 lost, ...). */
  code?: number;
  reason?: string;
  wasClean?: boolean;
  /**
   * On "closed" after a close that retrying cannot fix (1008 token refused
   * or user banned, 4003 token expired, 4004 disconnected by the server):
   * the client stopped and will not reconnect.
   */
  permanent?: boolean;
}

export interface DisconnectEvent {
  code: number;
  reason: string;
  wasClean: boolean;
}

export interface Welcome {
  type: "welcome";
  client: string;
  node: string;
  /** Absent with shared: true (the shared worker answers the server's pings). */
  heartbeat_ms?: number;
  /** The token's sub, when the connection has a token. */
  user?: string;
  /** True when this tab talks to the server through the shared worker. */
  shared?: true;
}

export interface SubscribedInfo extends Position {
  /** False when messages since the last position could not be delivered. */
  recovered: boolean;
  frame: object;
}

/** A presence member: its connection's client id, and the token's user and info when it had one. */
export interface Member {
  client: string;
  user?: string;
  info?: unknown;
}

export interface SubscribeOptions {
  /** Resume after this position (e.g. persisted by the app). */
  since?: Position;
  /**
   * At most this many messages per second (0.01 to 100): when they come
   * faster, the newest at each tick, with msg.skipped. Recovery after a
   * reconnect is not capped.
   */
  maxRate?: number;
  /** Called after every (re)subscribe is confirmed. */
  onSubscribed?: (info: SubscribedInfo) => void;
  /** Messages were lost (history window passed, new epoch): reload state. */
  onReset?: (at: Position, frame: object) => void;
  /** Presence namespaces: someone subscribed. */
  onJoin?: (member: Member, frame: object) => void;
  /** Presence namespaces: someone left. */
  onLeave?: (member: Member, frame: object) => void;
  /** The subscribe was refused (unknown namespace, forbidden, ...). */
  onError?: (err: HeraldError) => void;
  /** The server ended the subscription, with its reason. */
  onUnsubscribed?: (reason: string) => void;
}

export interface Subscription {
  readonly channel: string;
  /** The last position delivered, or null before the first. */
  readonly position: Position | null;
  unsubscribe(): void;
}

export interface Options {
  /** ws(s):// or http(s):// URL, or a path; default "/ws" on the page's host. */
  url?: string;
  /** Sent as the token query parameter; a function is asked before every connect. */
  token?: string | (() => string | Promise<string>);
  /** Reconnect backoff bounds in ms (default 250 and 10000), jittered. */
  minBackoff?: number;
  maxBackoff?: number;
  /** How long a request (publish, history, presence) may take, ms; default 10000. */
  timeout?: number;
  onState?: (e: StateEvent) => void;
  /**
   * The WebSocket constructor; default globalThis.WebSocket. Pass one where
   * there is none (Node before 22): `import WebSocket from "ws"`. Without
   * either, the constructor throws a HeraldError with code "no_websocket".
   */
  WebSocket?: new (url: string) => WebSocket;
  /**
   * Share one WebSocket among this browser's tabs of this origin (and this
   * url) through a SharedWorker: each channel is subscribed once on the
   * server, every tab's handlers get every message, resume stays
   * loss-free. Where SharedWorker is missing (or cannot start), one
   * connection per tab as without it. The connection uses the token of the
   * tab that connected last with one. See README.md, "One connection for
   * all tabs".
   */
  shared?: boolean;
  /**
   * Where herald-worker.js is, for shared: true; default next to herald.js
   * (new URL("./herald-worker.js", import.meta.url)). It must be on the
   * page's origin: serve it from there when herald.js comes from elsewhere.
   */
  worker?: string | URL;
}

export interface PublishAck extends Position {
  type: "ack";
  channel: string;
}

export interface HistoryReply<T = unknown> extends Position {
  type: "history";
  channel: string;
  complete: boolean;
  messages: Array<Position & { channel: string; data: T; ts?: number }>;
}

export interface PresenceReply {
  type: "presence";
  channel: string;
  members: Member[];
}

export class HeraldError extends Error {
  /** The server's error code (forbidden, rate_limited, ...) or timeout, disconnected, closed, no_websocket. */
  code: string;
  channel?: string;
}

export class Herald {
  constructor(opts?: Options | string);
  readonly url: string;
  readonly state: State;
  /** This connection's client id and node, from the welcome frame. */
  readonly client: string | null;
  readonly node: string | null;
  /** After a permanent close by the server: its code and reason. */
  readonly closeCode?: number;
  readonly closeReason?: string;

  on(event: "state", fn: (e: StateEvent) => void): () => void;
  on(event: "connected", fn: (w: Welcome) => void): () => void;
  on(event: "disconnected", fn: (e: DisconnectEvent) => void): () => void;
  on(event: "error", fn: (e: HeraldError) => void): () => void;
  /** A server-side subscription (POST /api/subscribe, the token's subs claim) began. */
  on(event: "subscribed", fn: (e: { channel: string; frame: unknown }) => void): () => void;
  /** A message of a server-side subscription (subscribe() to the channel to take it over). */
  on(event: "message", fn: (msg: Message) => void): () => void;
  /** A server-side subscription ended (POST /api/unsubscribe: reason "server"). */
  on(event: "unsubscribed", fn: (e: { channel: string; reason: string }) => void): () => void;

  subscribe<T = unknown>(channel: string, onMessage: (data: T, msg: Message<T>) => void, opts?: SubscribeOptions): Subscription;
  unsubscribe(channel: string): void;
  publish(channel: string, data: unknown): Promise<PublishAck>;
  history<T = unknown>(channel: string, opts?: { since?: Position; limit?: number }): Promise<HistoryReply<T>>;
  presence(channel: string): Promise<PresenceReply>;
  close(): void;
}

export default Herald;
