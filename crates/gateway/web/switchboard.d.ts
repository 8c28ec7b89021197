// Type declarations for switchboard.js (Switchboard v1 client, JSON subprotocol).

export type State = 'connecting' | 'open' | 'closed';

export interface Position {
  epoch: string;
  offset: number;
}

export interface WelcomeFrame {
  type: 'welcome';
  conn_id: string;
  user: string;
  node: string;
  heartbeat_ms: number;
  /** The personal channel, `user:<id>`. */
  channel: string;
  epoch: string;
  /** Offset of the newest message in the personal channel (0 when empty). */
  offset: number;
  /** Present only when the client resumed with `since`. */
  recovered?: boolean;
}

export interface MessageFrame<T = unknown> {
  type: 'message';
  channel: string;
  /** Sender's user id; absent for server-API publishes without `from`. */
  from?: string;
  id: string;
  epoch: string;
  offset: number;
  ts: number;
  data?: T;
  /** Binary payloads (from protobuf publishers), base64. */
  data_b64?: string;
}

export interface PresenceFrame {
  type: 'presence';
  channel: string;
  user: string;
  event: 'join' | 'leave';
}

export interface GoawayFrame {
  type: 'goaway';
  reason: string;
  reconnect_ms: number;
}

export interface ErrorFrame {
  type: 'error';
  code: string;
  message?: string;
}

export interface ReplyFrame {
  type: 'reply';
  id?: number;
  ok: boolean;
  epoch?: string;
  offset?: number;
  recovered?: boolean;
  data?: unknown;
  error?: { code: string; message?: string };
}

export interface PongFrame {
  type: 'pong';
  id?: number;
}

/** Every frame the server sends (the client handles each; see README.md). */
export type ServerFrame =
  | WelcomeFrame
  | MessageFrame
  | ReplyFrame
  | PresenceFrame
  | PongFrame
  | GoawayFrame
  | ErrorFrame
  | ResyncFrame;

/** Every frame the client sends (built by the methods below; `id` is set by the client). */
export type ClientFrame =
  | { type: 'subscribe'; id: number; channel: string; since?: Position }
  | { type: 'unsubscribe'; id: number; channel: string }
  | { type: 'publish'; id: number; channel: string; idempotency_key: string; data?: unknown; data_b64?: string }
  | { type: 'ack'; channel: string; offset: number; epoch?: string }
  | { type: 'refresh'; id: number; token: string }
  | { type: 'ping'; id: number }
  | { type: 'rpc'; id: number; method: string; data?: unknown };

/**
 * History this client depended on in `channel` is gone: reload the channel's state from
 * your backend; delivery goes on after (epoch, offset). Emitted for a `resync` frame on
 * a live connection (Redis restarted empty, a failover lost writes, a gap older than the
 * stream) and for a resume answered `recovered:false`.
 */
export interface ResyncEvent {
  channel: string;
  epoch: string;
  offset: number;
}

/** The `resync` frame as the server sends it. */
export interface ResyncFrame extends ResyncEvent {
  type: 'resync';
}

export interface PublishOptions {
  /**
   * 1–64 characters of [A-Za-z0-9_.:-]. Default: a fresh random key per publish. The same
   * key on the same channel within the server's window (300 s by default) is stored once
   * and answered with the first position.
   */
  idempotencyKey?: string;
}

/** Emitted before each scheduled reconnect (an addition to the documented events). */
export interface ReconnectEvent {
  attempt: number;
  delayMs: number;
  url: string;
}

/**
 * Errors from the client: `code` is the server's error code for failed replies
 * (e.g. 'forbidden', 'no_route'), or one of the client's own: 'timeout', 'disconnected'
 * (connection lost before the reply; or close code 4003), 'closed' (close() was called),
 * 'cancelled' (unsubscribed while the subscribe waited), 'connect_failed', 'token_error',
 * 'protocol_error' (1002), 'invalid_utf8' (1007), 'too_large' (1009), 'slow_consumer' (4008),
 * 'too_many_bad_frames' (4400), 'bad_frame'.
 */
export class SwitchboardError extends Error {
  constructor(code: string, message?: string, extra?: Record<string, unknown>);
  code: string;
  /** Set when the error comes from a WebSocket close. */
  closeCode?: number;
}

export interface SwitchboardEvents {
  state: State;
  welcome: WelcomeFrame;
  message: MessageFrame;
  presence: PresenceFrame;
  resync: ResyncEvent;
  error: ErrorFrame | SwitchboardError | Error;
  goaway: GoawayFrame;
  reconnect: ReconnectEvent;
}

export interface WebSocketLike {
  readonly readyState: number;
  binaryType?: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface SwitchboardOptions {
  /** `ws://host:8080/ws`. Either `url` or `urls`. */
  url?: string;
  /** Several gateway URLs: every reconnect tries the next one; a goaway always moves on. */
  urls?: string[];
  /** Called before every (re)connect and for each refresh. A plain string is accepted too. */
  token: (() => string | Promise<string>) | string;
  /** Send `refresh` this long before the token's `exp`. Default 30000. */
  refreshBeforeMs?: number;
  /** subscribe/unsubscribe/publish/rpc reject with code 'timeout' after this. Default 10000. */
  requestTimeoutMs?: number;
  /** Full-jitter exponential backoff: random(0, min(maxMs, minMs * 2**attempt)). Default 250/10000. */
  backoff?: { minMs?: number; maxMs?: number };
  /** Ack the personal channel (debounced) up to the newest offset delivered. Default true. */
  autoAck?: boolean;
  /** Delay of the automatic ack. Default 250. */
  ackDelayMs?: number;
  /** WebSocket implementation. Default globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** For tests: random source in [0, 1). Default Math.random. */
  random?: () => number;
  /** For tests: clock in ms. Default Date.now. */
  now?: () => number;
  /** For tests: timer functions. Default globalThis.setTimeout / clearTimeout. */
  setTimeout?: (fn: () => void, ms: number) => any;
  clearTimeout?: (handle: any) => void;
}

export class Switchboard {
  constructor(options: SwitchboardOptions);

  /** From the latest welcome (null before the first). */
  readonly user: string | null;
  readonly connId: string | null;
  readonly node: string | null;
  readonly state: State;
  /** The URL of the current (or next) connection attempt. */
  readonly url: string;

  on<K extends keyof SwitchboardEvents>(event: K, handler: (value: SwitchboardEvents[K]) => void): this;
  off<K extends keyof SwitchboardEvents>(event: K, handler: (value: SwitchboardEvents[K]) => void): this;

  /** Starts connecting; resolves on the first welcome. Rejects only if closed (close() or 4003) before it. */
  connect(): Promise<WelcomeFrame>;
  /** Resolves the subscribe reply; the room is re-subscribed (with since) after every reconnect. */
  subscribe(channel: string): Promise<ReplyFrame>;
  unsubscribe(channel: string): Promise<ReplyFrame>;
  /**
   * Resolves the message's position. Bytes are sent as data_b64. Every publish carries an
   * idempotency key; one whose connection drops before the reply is sent again with the
   * same key after the reconnect, before newer requests (exactly-once, in send order),
   * until `requestTimeoutMs` passes.
   */
  publish(channel: string, data: unknown, options?: PublishOptions): Promise<Position>;
  /** Resolves the reply's data. */
  rpc<T = unknown>(method: string, data?: unknown): Promise<T>;
  /** Resolves the pong frame. */
  ping(): Promise<PongFrame>;
  /** Acks the personal channel up to the newest offset delivered; true when an ack was sent. */
  ack(): boolean;
  /** No more reconnects; waiting requests reject with code 'closed'. */
  close(): void;
}

/** The `exp` claim (seconds) of a JWT, decoded without verification. */
export function tokenExpiry(token: string): number | null;

export default Switchboard;
