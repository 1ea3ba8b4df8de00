/*
 * Wire types of the odin-dispatch client protocol (docs/protocol.md,
 * "Client protocol") and the events of OdinClient (docs/clients.md).
 */

/** A channel's position: Kafka partition `p` and offset `seq`. */
export interface Position {
    p: number;
    seq: number;
}

/** One record for one channel, as a shard sends it. */
export interface Envelope<D = unknown> {
    seq: number;
    p: number;
    ts: number;
    type: string;
    priority: number;
    channel: string;
    /** Present (true) only on records sent by a `reconnect` replay. */
    replay?: boolean;
    /** The Kafka record's value, verbatim (null for an empty value). */
    data: D;
}

export interface SubscriptionAck {
    type: "subscription_ack";
    subscribed: string[];
    count: number;
}
export interface UnsubscriptionAck {
    type: "unsubscription_ack";
    unsubscribed: string[];
    count: number;
}
export interface Pong {
    type: "pong";
    ts: number;
}
export interface ReconnectAck {
    type: "reconnect_ack";
    replayed: number;
    subscribed: string[];
    count: number;
}
/** Every code a shard may answer a `reconnect` with. */
export type ResumeErrorCode =
    | "TOO_FAR_BEHIND"
    | "POSITION_EXPIRED"
    | "INVALID_POSITION"
    | "RESUME_UNAVAILABLE"
    | "RESUME_BUSY"
    | "RESUME_RATE_LIMITED";
export const RESUME_ERROR_CODES: readonly ResumeErrorCode[] = [
    "TOO_FAR_BEHIND",
    "POSITION_EXPIRED",
    "INVALID_POSITION",
    "RESUME_UNAVAILABLE",
    "RESUME_BUSY",
    "RESUME_RATE_LIMITED",
];
export interface ReconnectError {
    type: "reconnect_error";
    code: ResumeErrorCode | string;
    message: string;
}
export type ErrorCode =
    | "INVALID_JSON"
    | "UNKNOWN_TYPE"
    | "INVALID_CHANNEL"
    | "TOO_MANY_SUBSCRIPTIONS"
    | "MESSAGE_TOO_LARGE"
    | "RATE_LIMIT_EXCEEDED";
export interface ErrorReply {
    type: "error";
    code: ErrorCode | string;
    message: string;
}
/** Anything a shard sends that is not an envelope. */
export type ServerReply =
    | SubscriptionAck
    | UnsubscriptionAck
    | Pong
    | ReconnectAck
    | ReconnectError
    | ErrorReply;

/** Messages the client sends. */
export type ClientMessage =
    | { type: "subscribe"; data: { channels: string[] } }
    | { type: "unsubscribe"; data: { channels: string[] } }
    | { type: "heartbeat" }
    | { type: "reconnect"; data: { channels: Record<string, Position> } };

/**
 * Connection states, in the order a connection goes through them:
 * connecting → (resuming →) live → backoff → connecting → ... and closed
 * after close().
 */
export type ConnectionState = "connecting" | "resuming" | "live" | "backoff" | "closed";

export interface StateEvent {
    state: ConnectionState;
    previous: ConnectionState;
    /** The URL being connected / connected to (backoff: the one that
     *  ended; the next connect picks one per urlOrder). */
    url: string;
    /** backoff only: the delay before the next connect, ms. */
    delayMs?: number;
    /** backoff only: the attempt number (0 after a connection that was live). */
    attempt?: number;
    /** backoff only: why the previous connection ended. */
    reason?: string;
}

/** The one signal that a channel's stream has a hole: refetch a snapshot. */
export interface RefetchEvent {
    channel: string;
    /** A ResumeErrorCode, or an `error` code if the shard refused the request. */
    code: ResumeErrorCode | string;
    message: string;
    /** The position the client asked to resume from. */
    position?: Position;
    url: string;
}

export interface ResumedEvent {
    url: string;
    replayed: number;
    channels: string[];
    /** Positions sent in the `reconnect`. */
    from: Record<string, Position>;
}

export interface DuplicateEvent {
    channel: string;
    p: number;
    seq: number;
    /** The channel's position when the duplicate came. */
    last: Position;
    replay: boolean;
}

export interface CloseEvent {
    url: string;
    code: number;
    reason: string;
    /** true when the library closed it (dead link, connect timeout, close()). */
    byClient: boolean;
}

export interface ClientErrorEvent {
    code: string;
    message: string;
    url: string;
}

export interface ClientEvents {
    state: StateEvent;
    open: { url: string };
    close: CloseEvent;
    message: Envelope;
    duplicate: DuplicateEvent;
    refetch: RefetchEvent;
    resumed: ResumedEvent;
    subscribed: SubscriptionAck;
    unsubscribed: UnsubscriptionAck;
    pong: Pong;
    error: ClientErrorEvent;
}

/** The part of the WebSocket API the client uses (browsers, `ws`). */
export interface WebSocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: { data: unknown }) => void) | null;
    onclose: ((ev: { code?: number; reason?: string }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Timer functions, injectable for tests. */
export interface Clock {
    now(): number;
    setTimeout(fn: () => void, ms: number): unknown;
    clearTimeout(handle: unknown): void;
}

export interface BackoffOptions {
    /** Ceiling of the first delay, ms (500). */
    baseMs?: number;
    /** Largest ceiling, ms (30000). */
    maxMs?: number;
    /** Ceiling growth per failed attempt (2). */
    factor?: number;
}

export interface ClientOptions {
    /** Shard WebSocket URLs (ws://host:port/ws); one is used at a time. */
    urls: string | string[];
    /** Channels to subscribe to from the start. */
    channels?: string[];
    /**
     * WebSocket constructor: the browser's by default; in Node 18 pass
     * `WebSocket` from the `ws` package.
     */
    WebSocket?: WebSocketConstructor;
    /** "random" (default): a random URL first and after each failure
     *  another one at random; "ordered": urls[0] first, then the next. */
    urlOrder?: "random" | "ordered";
    backoff?: BackoffOptions;
    /** Send {"type":"heartbeat"} this often, ms (15000). */
    heartbeatIntervalMs?: number;
    /** Declare the link dead when nothing arrived for
     *  heartbeatIntervalMs + heartbeatTimeoutMs, ms (10000). */
    heartbeatTimeoutMs?: number;
    /** Give up a connect that has not opened after this long, ms (10000). */
    connectTimeoutMs?: number;
    /** Uniform [0, 1) source, for tests (Math.random). */
    random?: () => number;
    clock?: Clock;
    /** Connect right after construction (true: in a microtask, so
     *  listeners added synchronously see every event); false: call connect(). */
    autoConnect?: boolean;
}

export interface ClientStats {
    /** Envelopes handed to "message" listeners. */
    received: number;
    /** Of those, marked replay. */
    replayed: number;
    /** Envelopes dropped because their position was not after the channel's. */
    duplicates: number;
    /** reconnect_ack received. */
    resumes: number;
    /** refetch events emitted. */
    refetches: number;
    /** Connections opened. */
    connects: number;
}
