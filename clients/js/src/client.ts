/*
 * OdinClient: one WebSocket connection to an odin-dispatch shard at a time,
 * with reconnect (full-jitter exponential back-off), resume by position on
 * whichever shard it reaches, duplicate drop by position, heartbeats and
 * dead-link detection, and one "refetch" event per channel whose resume
 * failed.  No runtime dependency; docs/clients.md is the user's guide.
 */
import type {
    BackoffOptions,
    ClientEvents,
    ClientOptions,
    ClientStats,
    Clock,
    ConnectionState,
    Envelope,
    Position,
    StateEvent,
    WebSocketConstructor,
    WebSocketLike,
} from "./types.js";

const DEFAULTS = {
    baseMs: 500,
    maxMs: 30000,
    factor: 2,
    heartbeatIntervalMs: 15000,
    heartbeatTimeoutMs: 10000,
    connectTimeoutMs: 10000,
};

/** Channel names as the shard checks them: <token>.<category>. */
const CHANNEL_RE = /^[A-Za-z0-9_-]{1,64}\.[a-z_]{1,32}$/;

export function isValidChannel(ch: string): boolean {
    return typeof ch === "string" && CHANNEL_RE.test(ch);
}

/**
 * Full-jitter exponential back-off: a delay drawn uniformly from
 * [0, min(maxMs, baseMs * factor^attempt)).  attempt counts failures since
 * the last connection that went live, from 0.
 */
export function backoffCeiling(attempt: number, opts: BackoffOptions = {}): number {
    const base = opts.baseMs ?? DEFAULTS.baseMs;
    const max = opts.maxMs ?? DEFAULTS.maxMs;
    const factor = opts.factor ?? DEFAULTS.factor;
    const c = base * Math.pow(factor, Math.max(0, attempt));
    return Math.min(max, Number.isFinite(c) ? c : max);
}

export function backoffDelay(
    attempt: number,
    opts: BackoffOptions = {},
    random: () => number = Math.random,
): number {
    return Math.floor(random() * backoffCeiling(attempt, opts));
}

/** The `reconnect` message for these positions (docs/protocol.md "Resume"). */
export function buildResumeMessage(positions: Record<string, Position>): string {
    const channels: Record<string, Position> = {};
    for (const ch of Object.keys(positions)) {
        const pos = positions[ch];
        channels[ch] = { p: pos.p, seq: pos.seq };
    }
    return JSON.stringify({ type: "reconnect", data: { channels } });
}

const realClock: Clock = {
    now: () => Date.now(),
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

type Listener<T> = (ev: T) => void;

function messageText(data: unknown): string | null {
    if (typeof data === "string") return data;
    // binary frames are not part of the protocol; a Node Buffer of a text
    // frame (some `ws` set-ups) is decoded
    if (data && typeof (data as { toString?: unknown }).toString === "function" &&
        typeof (data as { byteLength?: unknown }).byteLength === "number") {
        try {
            return new TextDecoder().decode(data as Uint8Array);
        } catch {
            return null;
        }
    }
    return null;
}

export class OdinClient {
    private readonly urls: string[];
    private readonly Ws: WebSocketConstructor;
    private readonly opts: Required<Pick<ClientOptions, "heartbeatIntervalMs" | "heartbeatTimeoutMs" | "connectTimeoutMs">>;
    private readonly backoffOpts: BackoffOptions;
    private readonly random: () => number;
    private readonly clock: Clock;
    private readonly ordered: boolean;

    private listeners: { [K in keyof ClientEvents]?: Set<Listener<ClientEvents[K]>> } = {};
    private _state: ConnectionState = "closed";
    private ws: WebSocketLike | null = null;
    private urlIndex = -1;
    private attempt = 0;
    private stopped = true;
    /** Bumped by every openSocket and close(): after calling listeners,
     *  code that goes on checks the connection it works for is still the
     *  current one (a listener may have called close() or connect()). */
    private gen = 0;
    private closeCalled = false;

    /** Subscribed channels (wanted, whether or not acked yet). */
    private channels = new Set<string>();
    /** Last delivered position per channel (any channel, broadcasts too). */
    private pos = new Map<string, Position>();

    /* per connection */
    private resumeInFlight: Record<string, Position> | null = null;
    private resumeSawReplay = false;
    private subsAwaitingAck = 0;
    private queuedResume: Record<string, Position> = {};
    private queuedSubscribe: string[] = [];
    private lastRx = 0;
    private connectTimer: unknown = null;
    private heartbeatTimer: unknown = null;
    private backoffTimer: unknown = null;

    private _stats: ClientStats = {
        received: 0, replayed: 0, duplicates: 0, resumes: 0, refetches: 0, connects: 0,
    };

    constructor(options: ClientOptions) {
        const urls = typeof options.urls === "string" ? [options.urls] : [...(options.urls ?? [])];
        if (urls.length === 0) throw new TypeError("OdinClient: urls is empty");
        this.urls = urls;
        const Ws = options.WebSocket ??
            (globalThis as unknown as { WebSocket?: WebSocketConstructor }).WebSocket;
        if (!Ws) {
            throw new TypeError("OdinClient: no global WebSocket; pass options.WebSocket " +
                "(e.g. WebSocket from the 'ws' package in Node 18)");
        }
        this.Ws = Ws;
        this.opts = {
            heartbeatIntervalMs: options.heartbeatIntervalMs ?? DEFAULTS.heartbeatIntervalMs,
            heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? DEFAULTS.heartbeatTimeoutMs,
            connectTimeoutMs: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
        };
        this.backoffOpts = { ...options.backoff };
        this.random = options.random ?? Math.random;
        this.clock = options.clock ?? realClock;
        this.ordered = options.urlOrder === "ordered";
        for (const ch of options.channels ?? []) this.addChannel(ch);
        // deferred, so listeners added right after construction see the
        // first "connecting"
        if (options.autoConnect !== false) {
            Promise.resolve().then(() => { if (!this.closeCalled) this.connect(); });
        }
    }

    /* ---- events ---------------------------------------------------------- */

    /** Adds a listener; returns a function that removes it. */
    on<K extends keyof ClientEvents>(event: K, fn: Listener<ClientEvents[K]>): () => void {
        let set = this.listeners[event] as Set<Listener<ClientEvents[K]>> | undefined;
        if (!set) {
            set = new Set();
            (this.listeners as Record<string, unknown>)[event] = set;
        }
        set.add(fn);
        return () => this.off(event, fn);
    }

    off<K extends keyof ClientEvents>(event: K, fn: Listener<ClientEvents[K]>): void {
        (this.listeners[event] as Set<Listener<ClientEvents[K]>> | undefined)?.delete(fn);
    }

    private emit<K extends keyof ClientEvents>(event: K, ev: ClientEvents[K]): void {
        const set = this.listeners[event] as Set<Listener<ClientEvents[K]>> | undefined;
        if (!set) return;
        for (const fn of [...set]) {
            try {
                fn(ev);
            } catch (e) {
                // a listener's exception must not break the connection
                // logic; rethrown asynchronously so it is still reported
                this.clock.setTimeout(() => { throw e; }, 0);
            }
        }
    }

    /* ---- public API ------------------------------------------------------- */

    get state(): ConnectionState {
        return this._state;
    }

    /** The URL of the current (or next) connection. */
    get url(): string {
        return this.urls[Math.max(0, this.urlIndex)];
    }

    stats(): ClientStats {
        return { ...this._stats };
    }

    /** Positions of the subscribed channels that have one. */
    positions(): Record<string, Position> {
        const out: Record<string, Position> = {};
        for (const ch of this.channels) {
            const p = this.pos.get(ch);
            if (p) out[ch] = { p: p.p, seq: p.seq };
        }
        return out;
    }

    subscribedChannels(): string[] {
        return [...this.channels];
    }

    /** Starts (or restarts after close()) connecting. */
    connect(): void {
        this.closeCalled = false;
        if (!this.stopped) return;
        this.stopped = false;
        this.attempt = 0;
        this.openSocket();
    }

    /**
     * Subscribes to channels.  With `from`, each channel is resumed from
     * that position (e.g. the position of the snapshot the application
     * loaded): records after it are replayed, then live.
     */
    subscribe(channels: string | string[], from?: Position | Record<string, Position>): void {
        const list = typeof channels === "string" ? [channels] : channels;
        for (const ch of list) {
            if (!isValidChannel(ch)) throw new TypeError(`OdinClient: invalid channel "${ch}"`);
        }
        const resume: Record<string, Position> = {};
        const plain: string[] = [];
        for (const ch of list) {
            const had = this.channels.has(ch);
            this.channels.add(ch);
            let p: Position | undefined;
            if (from && typeof (from as Position).p === "number") p = from as Position;
            else if (from) p = (from as Record<string, Position>)[ch];
            if (p) {
                this.pos.set(ch, { p: p.p, seq: p.seq });
                resume[ch] = this.pos.get(ch)!;
            } else if (had) {
                continue; // already subscribed: a no-op
            } else if (!this.pos.has(ch)) {
                plain.push(ch);
            } else {
                resume[ch] = this.pos.get(ch)!;
            }
        }
        if (!this.isOpen()) return; // sent on (re)connect
        if (plain.length) {
            if (this.resumeInFlight) this.queuedSubscribe.push(...plain);
            else this.sendSubscribe(plain);
        }
        if (Object.keys(resume).length) {
            if (this.resumeInFlight) Object.assign(this.queuedResume, resume);
            else this.startResume(resume);
        }
    }

    unsubscribe(channels: string | string[]): void {
        const list = typeof channels === "string" ? [channels] : channels;
        const sent: string[] = [];
        for (const ch of list) {
            if (this.channels.delete(ch)) sent.push(ch);
            this.pos.delete(ch);
            delete this.queuedResume[ch];
            this.queuedSubscribe = this.queuedSubscribe.filter((c) => c !== ch);
        }
        if (sent.length && this.isOpen()) {
            this.send({ type: "unsubscribe", data: { channels: sent } });
        }
    }

    /** Closes the connection and stops reconnecting (state "closed"). */
    close(): void {
        this.closeCalled = true;
        if (this.stopped) return;
        this.stopped = true;
        this.gen++;
        this.clearTimers();
        const ws = this.ws;
        this.ws = null;
        if (ws) {
            this.detach(ws);
            try { ws.close(1000, "client closed"); } catch { /* already closed */ }
            this.emit("close", { url: this.url, code: 1000, reason: "client closed", byClient: true });
        }
        this.setState("closed", {});
    }

    /* ---- connection ------------------------------------------------------- */

    private isOpen(): boolean {
        return !!this.ws && this._state !== "connecting" && this._state !== "backoff" && this._state !== "closed";
    }

    private nextUrlIndex(): number {
        const n = this.urls.length;
        if (this.urlIndex < 0) {
            return this.ordered ? 0 : Math.floor(this.random() * n) % n;
        }
        if (n === 1) return 0;
        if (this.ordered) return (this.urlIndex + 1) % n;
        // another one than the last, at random
        const k = Math.floor(this.random() * (n - 1)) % (n - 1);
        return (this.urlIndex + 1 + k) % n;
    }

    private setState(state: ConnectionState, extra: Partial<StateEvent>): void {
        const previous = this._state;
        this._state = state;
        this.emit("state", { state, previous, url: this.url, ...extra });
    }

    private openSocket(): void {
        this.urlIndex = this.nextUrlIndex();
        this.gen++;
        const url = this.urls[this.urlIndex];
        this.resetConnection();
        this.setState("connecting", {});
        let ws: WebSocketLike;
        try {
            ws = new this.Ws(url);
        } catch (e) {
            this.failed(String((e as Error)?.message ?? e));
            return;
        }
        this.ws = ws;
        ws.onopen = () => { if (this.ws === ws) this.onOpen(); };
        ws.onmessage = (ev) => { if (this.ws === ws) this.onMessage(ev.data); };
        ws.onclose = (ev) => {
            if (this.ws !== ws) return;
            this.ws = null;
            this.detach(ws);
            this.emit("close", { url, code: ev?.code ?? 1006, reason: ev?.reason ?? "", byClient: false });
            this.failed(`closed ${ev?.code ?? 1006}${ev?.reason ? " " + ev.reason : ""}`);
        };
        ws.onerror = () => { /* onclose follows */ };
        this.connectTimer = this.clock.setTimeout(() => {
            this.connectTimer = null;
            if (this.ws === ws && this._state === "connecting") this.abandon(ws, 4001, "connect timeout");
        }, this.opts.connectTimeoutMs);
    }

    private detach(ws: WebSocketLike): void {
        ws.onopen = null;
        ws.onmessage = null;
        ws.onclose = null;
        ws.onerror = () => { /* ignore late errors */ };
    }

    /** Gives up a socket without waiting for its close (dead, too slow). */
    private abandon(ws: WebSocketLike, code: number, reason: string): void {
        this.ws = null;
        this.detach(ws);
        try { ws.close(code, reason); } catch { /* ignore */ }
        this.emit("close", { url: this.url, code, reason, byClient: true });
        this.failed(reason);
    }

    private resetConnection(): void {
        this.clearTimers();
        this.resumeInFlight = null;
        this.resumeSawReplay = false;
        this.subsAwaitingAck = 0;
        this.queuedResume = {};
        this.queuedSubscribe = [];
    }

    private clearTimers(): void {
        for (const t of [this.connectTimer, this.heartbeatTimer, this.backoffTimer]) {
            if (t !== null) this.clock.clearTimeout(t);
        }
        this.connectTimer = this.heartbeatTimer = this.backoffTimer = null;
    }

    /** The connection ended or never opened: back off, then connect again. */
    private failed(reason: string): void {
        this.clearTimers();
        if (this.stopped) return;
        const attempt = this.attempt++;
        const delayMs = backoffDelay(attempt, this.backoffOpts, this.random);
        this.setState("backoff", { delayMs, attempt, reason });
        this.backoffTimer = this.clock.setTimeout(() => {
            this.backoffTimer = null;
            if (!this.stopped) this.openSocket();
        }, delayMs);
    }

    private onOpen(): void {
        if (this.connectTimer !== null) {
            this.clock.clearTimeout(this.connectTimer);
            this.connectTimer = null;
        }
        this._stats.connects++;
        this.lastRx = this.clock.now();
        const gen = this.gen;
        this.emit("open", { url: this.url });
        if (gen !== this.gen) return;
        this.scheduleHeartbeat();
        const resume: Record<string, Position> = {};
        const plain: string[] = [];
        for (const ch of this.channels) {
            const p = this.pos.get(ch);
            if (p) resume[ch] = p;
            else plain.push(ch);
        }
        // plain subscribe first: its ack comes at once, before the replay
        if (plain.length) this.sendSubscribe(plain);
        if (Object.keys(resume).length) this.startResume(resume);
        else this.goLive();
    }

    private goLive(): void {
        this.attempt = 0;
        if (this._state !== "live") this.setState("live", {});
    }

    private startResume(positions: Record<string, Position>): void {
        const snap: Record<string, Position> = {};
        for (const ch of Object.keys(positions)) snap[ch] = { p: positions[ch].p, seq: positions[ch].seq };
        this.resumeInFlight = snap;
        this.resumeSawReplay = false;
        if (this._state !== "resuming") this.setState("resuming", {});
        this.sendRaw(buildResumeMessage(snap));
    }

    private finishResume(): void {
        this.resumeInFlight = null;
        const q = this.queuedResume;
        const s = this.queuedSubscribe;
        this.queuedResume = {};
        this.queuedSubscribe = [];
        if (s.length) this.sendSubscribe(s);
        const left: Record<string, Position> = {};
        for (const ch of Object.keys(q)) if (this.channels.has(ch)) left[ch] = this.pos.get(ch) ?? q[ch];
        if (Object.keys(left).length) this.startResume(left);
        else this.goLive();
    }

    private sendSubscribe(channels: string[]): void {
        this.subsAwaitingAck++;
        this.send({ type: "subscribe", data: { channels } });
    }

    private send(msg: object): void {
        this.sendRaw(JSON.stringify(msg));
    }

    private sendRaw(text: string): void {
        const ws = this.ws;
        if (!ws) return;
        try {
            ws.send(text);
        } catch {
            // a socket that cannot send is dead: its close comes, or the
            // heartbeat check finds it
        }
    }

    /* ---- heartbeats ------------------------------------------------------- */

    private scheduleHeartbeat(): void {
        this.heartbeatTimer = this.clock.setTimeout(() => this.heartbeatTick(), this.opts.heartbeatIntervalMs);
    }

    private heartbeatTick(): void {
        this.heartbeatTimer = null;
        const ws = this.ws;
        if (!ws || this.stopped) return;
        const silent = this.clock.now() - this.lastRx;
        if (silent >= this.opts.heartbeatIntervalMs + this.opts.heartbeatTimeoutMs) {
            this.abandon(ws, 4000, "dead link");
            return;
        }
        // a heartbeat is a request; while a resume is in flight none is
        // sent, so an `error` reply is never ambiguous (the replay itself
        // keeps the link busy, and its ack comes within RESUME_TIMEOUT_MS)
        if (!this.resumeInFlight) this.send({ type: "heartbeat" });
        // next check: when the silence would reach the limit, at the latest
        const due = this.opts.heartbeatIntervalMs + this.opts.heartbeatTimeoutMs - silent;
        this.heartbeatTimer = this.clock.setTimeout(() => this.heartbeatTick(),
            Math.max(1, Math.min(this.opts.heartbeatIntervalMs, due)));
    }

    /* ---- input ------------------------------------------------------------ */

    private onMessage(data: unknown): void {
        this.lastRx = this.clock.now();
        const text = messageText(data);
        if (text === null) return;
        let m: Record<string, unknown>;
        try {
            m = JSON.parse(text);
        } catch {
            return;
        }
        if (!m || typeof m !== "object") return;
        if (typeof m.channel === "string" && typeof m.seq === "number" && typeof m.p === "number") {
            this.onEnvelope(m as unknown as Envelope);
            return;
        }
        switch (m.type) {
        case "subscription_ack":
            if (this.subsAwaitingAck > 0) this.subsAwaitingAck--;
            this.emit("subscribed", m as never);
            break;
        case "unsubscription_ack":
            this.emit("unsubscribed", m as never);
            break;
        case "pong":
            this.emit("pong", m as never);
            break;
        case "reconnect_ack": {
            const from = this.resumeInFlight ?? {};
            const gen = this.gen;
            this._stats.resumes++;
            this.emit("resumed", {
                url: this.url,
                replayed: typeof m.replayed === "number" ? m.replayed : 0,
                channels: Array.isArray(m.subscribed) ? (m.subscribed as string[]) : Object.keys(from),
                from,
            });
            if (gen === this.gen) this.finishResume();
            break;
        }
        case "reconnect_error":
            this.resumeFailed(String(m.code ?? "RESUME_FAILED"), String(m.message ?? ""), false);
            break;
        case "error": {
            const code = String(m.code ?? "ERROR");
            const message = String(m.message ?? "");
            if (this.subsAwaitingAck > 0) {
                // replies come in request order; a subscribe is answered at once
                this.subsAwaitingAck--;
                this.emit("error", { code, message, url: this.url });
            } else if (this.resumeInFlight && !this.resumeSawReplay) {
                // the reconnect itself was refused: nothing was subscribed
                this.resumeFailed(code, message, true);
            } else {
                this.emit("error", { code, message, url: this.url });
            }
            break;
        }
        default:
            break;
        }
    }

    /** One refetch per channel of the failed request. */
    private resumeFailed(code: string, message: string, resubscribe: boolean): void {
        const req = this.resumeInFlight ?? {};
        const gen = this.gen;
        const url = this.url;
        // every channel of the request gets its event, whatever a listener
        // does meanwhile; the connection work below only if still ours
        for (const ch of Object.keys(req)) {
            if (!this.channels.has(ch)) continue;
            this._stats.refetches++;
            this.emit("refetch", { channel: ch, code, message, position: req[ch], url });
        }
        if (gen !== this.gen) return;
        if (resubscribe) {
            const chs = Object.keys(req).filter((c) => this.channels.has(c));
            if (chs.length) this.sendSubscribe(chs);
        }
        this.finishResume();
    }

    private onEnvelope(env: Envelope): void {
        const ch = env.channel;
        const last = this.pos.get(ch);
        const replay = env.replay === true;
        if (replay) this.resumeSawReplay = true;
        if (last && last.p === env.p && env.seq <= last.seq) {
            this._stats.duplicates++;
            this.emit("duplicate", { channel: ch, p: env.p, seq: env.seq, last: { ...last }, replay });
            return;
        }
        // the position object is shared with an in-flight resume snapshot
        // only by copy (startResume), so updating in place is safe
        if (last) {
            last.p = env.p;
            last.seq = env.seq;
        } else {
            this.pos.set(ch, { p: env.p, seq: env.seq });
        }
        this._stats.received++;
        if (replay) this._stats.replayed++;
        this.emit("message", env);
    }

    private addChannel(ch: string): void {
        if (!isValidChannel(ch)) throw new TypeError(`OdinClient: invalid channel "${ch}"`);
        this.channels.add(ch);
    }
}
