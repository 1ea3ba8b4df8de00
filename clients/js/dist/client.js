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
export function isValidChannel(ch) {
    return typeof ch === "string" && CHANNEL_RE.test(ch);
}
/**
 * Full-jitter exponential back-off: a delay drawn uniformly from
 * [0, min(maxMs, baseMs * factor^attempt)).  attempt counts failures since
 * the last connection that went live, from 0.
 */
export function backoffCeiling(attempt, opts = {}) {
    const base = opts.baseMs ?? DEFAULTS.baseMs;
    const max = opts.maxMs ?? DEFAULTS.maxMs;
    const factor = opts.factor ?? DEFAULTS.factor;
    const c = base * Math.pow(factor, Math.max(0, attempt));
    return Math.min(max, Number.isFinite(c) ? c : max);
}
export function backoffDelay(attempt, opts = {}, random = Math.random) {
    return Math.floor(random() * backoffCeiling(attempt, opts));
}
/** The `reconnect` message for these positions (docs/protocol.md "Resume"). */
export function buildResumeMessage(positions) {
    const channels = {};
    for (const ch of Object.keys(positions)) {
        const pos = positions[ch];
        channels[ch] = { p: pos.p, seq: pos.seq };
    }
    return JSON.stringify({ type: "reconnect", data: { channels } });
}
const realClock = {
    now: () => Date.now(),
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h),
};
function messageText(data) {
    if (typeof data === "string")
        return data;
    // binary frames are not part of the protocol; a Node Buffer of a text
    // frame (some `ws` set-ups) is decoded
    if (data && typeof data.toString === "function" &&
        typeof data.byteLength === "number") {
        try {
            return new TextDecoder().decode(data);
        }
        catch {
            return null;
        }
    }
    return null;
}
export class OdinClient {
    constructor(options) {
        this.listeners = {};
        this._state = "closed";
        this.ws = null;
        this.urlIndex = -1;
        this.attempt = 0;
        this.stopped = true;
        /** Bumped by every openSocket and close(): after calling listeners,
         *  code that goes on checks the connection it works for is still the
         *  current one (a listener may have called close() or connect()). */
        this.gen = 0;
        this.closeCalled = false;
        /** Subscribed channels (wanted, whether or not acked yet). */
        this.channels = new Set();
        /** Last delivered position per channel (any channel, broadcasts too). */
        this.pos = new Map();
        /* per connection */
        this.resumeInFlight = null;
        this.resumeSawReplay = false;
        this.subsAwaitingAck = 0;
        this.queuedResume = {};
        this.queuedSubscribe = [];
        this.lastRx = 0;
        this.connectTimer = null;
        this.heartbeatTimer = null;
        this.backoffTimer = null;
        this._stats = {
            received: 0, replayed: 0, duplicates: 0, resumes: 0, refetches: 0, connects: 0,
        };
        const urls = typeof options.urls === "string" ? [options.urls] : [...(options.urls ?? [])];
        if (urls.length === 0)
            throw new TypeError("OdinClient: urls is empty");
        this.urls = urls;
        const Ws = options.WebSocket ??
            globalThis.WebSocket;
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
        for (const ch of options.channels ?? [])
            this.addChannel(ch);
        // deferred, so listeners added right after construction see the
        // first "connecting"
        if (options.autoConnect !== false) {
            Promise.resolve().then(() => { if (!this.closeCalled)
                this.connect(); });
        }
    }
    /* ---- events ---------------------------------------------------------- */
    /** Adds a listener; returns a function that removes it. */
    on(event, fn) {
        let set = this.listeners[event];
        if (!set) {
            set = new Set();
            this.listeners[event] = set;
        }
        set.add(fn);
        return () => this.off(event, fn);
    }
    off(event, fn) {
        this.listeners[event]?.delete(fn);
    }
    emit(event, ev) {
        const set = this.listeners[event];
        if (!set)
            return;
        for (const fn of [...set]) {
            try {
                fn(ev);
            }
            catch (e) {
                // a listener's exception must not break the connection
                // logic; rethrown asynchronously so it is still reported
                this.clock.setTimeout(() => { throw e; }, 0);
            }
        }
    }
    /* ---- public API ------------------------------------------------------- */
    get state() {
        return this._state;
    }
    /** The URL of the current (or next) connection. */
    get url() {
        return this.urls[Math.max(0, this.urlIndex)];
    }
    stats() {
        return { ...this._stats };
    }
    /** Positions of the subscribed channels that have one. */
    positions() {
        const out = {};
        for (const ch of this.channels) {
            const p = this.pos.get(ch);
            if (p)
                out[ch] = { p: p.p, seq: p.seq };
        }
        return out;
    }
    subscribedChannels() {
        return [...this.channels];
    }
    /** Starts (or restarts after close()) connecting. */
    connect() {
        this.closeCalled = false;
        if (!this.stopped)
            return;
        this.stopped = false;
        this.attempt = 0;
        this.openSocket();
    }
    /**
     * Subscribes to channels.  With `from`, each channel is resumed from
     * that position (e.g. the position of the snapshot the application
     * loaded): records after it are replayed, then live.
     */
    subscribe(channels, from) {
        const list = typeof channels === "string" ? [channels] : channels;
        for (const ch of list) {
            if (!isValidChannel(ch))
                throw new TypeError(`OdinClient: invalid channel "${ch}"`);
        }
        const resume = {};
        const plain = [];
        for (const ch of list) {
            const had = this.channels.has(ch);
            this.channels.add(ch);
            let p;
            if (from && typeof from.p === "number")
                p = from;
            else if (from)
                p = from[ch];
            if (p) {
                this.pos.set(ch, { p: p.p, seq: p.seq });
                resume[ch] = this.pos.get(ch);
            }
            else if (had) {
                continue; // already subscribed: a no-op
            }
            else if (!this.pos.has(ch)) {
                plain.push(ch);
            }
            else {
                resume[ch] = this.pos.get(ch);
            }
        }
        if (!this.isOpen())
            return; // sent on (re)connect
        if (plain.length) {
            if (this.resumeInFlight)
                this.queuedSubscribe.push(...plain);
            else
                this.sendSubscribe(plain);
        }
        if (Object.keys(resume).length) {
            if (this.resumeInFlight)
                Object.assign(this.queuedResume, resume);
            else
                this.startResume(resume);
        }
    }
    unsubscribe(channels) {
        const list = typeof channels === "string" ? [channels] : channels;
        const sent = [];
        for (const ch of list) {
            if (this.channels.delete(ch))
                sent.push(ch);
            this.pos.delete(ch);
            delete this.queuedResume[ch];
            this.queuedSubscribe = this.queuedSubscribe.filter((c) => c !== ch);
        }
        if (sent.length && this.isOpen()) {
            this.send({ type: "unsubscribe", data: { channels: sent } });
        }
    }
    /** Closes the connection and stops reconnecting (state "closed"). */
    close() {
        this.closeCalled = true;
        if (this.stopped)
            return;
        this.stopped = true;
        this.gen++;
        this.clearTimers();
        const ws = this.ws;
        this.ws = null;
        if (ws) {
            this.detach(ws);
            try {
                ws.close(1000, "client closed");
            }
            catch { /* already closed */ }
            this.emit("close", { url: this.url, code: 1000, reason: "client closed", byClient: true });
        }
        this.setState("closed", {});
    }
    /* ---- connection ------------------------------------------------------- */
    isOpen() {
        return !!this.ws && this._state !== "connecting" && this._state !== "backoff" && this._state !== "closed";
    }
    nextUrlIndex() {
        const n = this.urls.length;
        if (this.urlIndex < 0) {
            return this.ordered ? 0 : Math.floor(this.random() * n) % n;
        }
        if (n === 1)
            return 0;
        if (this.ordered)
            return (this.urlIndex + 1) % n;
        // another one than the last, at random
        const k = Math.floor(this.random() * (n - 1)) % (n - 1);
        return (this.urlIndex + 1 + k) % n;
    }
    setState(state, extra) {
        const previous = this._state;
        this._state = state;
        this.emit("state", { state, previous, url: this.url, ...extra });
    }
    openSocket() {
        this.urlIndex = this.nextUrlIndex();
        this.gen++;
        const url = this.urls[this.urlIndex];
        this.resetConnection();
        this.setState("connecting", {});
        let ws;
        try {
            ws = new this.Ws(url);
        }
        catch (e) {
            this.failed(String(e?.message ?? e));
            return;
        }
        this.ws = ws;
        ws.onopen = () => { if (this.ws === ws)
            this.onOpen(); };
        ws.onmessage = (ev) => { if (this.ws === ws)
            this.onMessage(ev.data); };
        ws.onclose = (ev) => {
            if (this.ws !== ws)
                return;
            this.ws = null;
            this.detach(ws);
            this.emit("close", { url, code: ev?.code ?? 1006, reason: ev?.reason ?? "", byClient: false });
            this.failed(`closed ${ev?.code ?? 1006}${ev?.reason ? " " + ev.reason : ""}`);
        };
        ws.onerror = () => { };
        this.connectTimer = this.clock.setTimeout(() => {
            this.connectTimer = null;
            if (this.ws === ws && this._state === "connecting")
                this.abandon(ws, 4001, "connect timeout");
        }, this.opts.connectTimeoutMs);
    }
    detach(ws) {
        ws.onopen = null;
        ws.onmessage = null;
        ws.onclose = null;
        ws.onerror = () => { };
    }
    /** Gives up a socket without waiting for its close (dead, too slow). */
    abandon(ws, code, reason) {
        this.ws = null;
        this.detach(ws);
        try {
            ws.close(code, reason);
        }
        catch { /* ignore */ }
        this.emit("close", { url: this.url, code, reason, byClient: true });
        this.failed(reason);
    }
    resetConnection() {
        this.clearTimers();
        this.resumeInFlight = null;
        this.resumeSawReplay = false;
        this.subsAwaitingAck = 0;
        this.queuedResume = {};
        this.queuedSubscribe = [];
    }
    clearTimers() {
        for (const t of [this.connectTimer, this.heartbeatTimer, this.backoffTimer]) {
            if (t !== null)
                this.clock.clearTimeout(t);
        }
        this.connectTimer = this.heartbeatTimer = this.backoffTimer = null;
    }
    /** The connection ended or never opened: back off, then connect again. */
    failed(reason) {
        this.clearTimers();
        if (this.stopped)
            return;
        const attempt = this.attempt++;
        const delayMs = backoffDelay(attempt, this.backoffOpts, this.random);
        this.setState("backoff", { delayMs, attempt, reason });
        this.backoffTimer = this.clock.setTimeout(() => {
            this.backoffTimer = null;
            if (!this.stopped)
                this.openSocket();
        }, delayMs);
    }
    onOpen() {
        if (this.connectTimer !== null) {
            this.clock.clearTimeout(this.connectTimer);
            this.connectTimer = null;
        }
        this._stats.connects++;
        this.lastRx = this.clock.now();
        const gen = this.gen;
        this.emit("open", { url: this.url });
        if (gen !== this.gen)
            return;
        this.scheduleHeartbeat();
        const resume = {};
        const plain = [];
        for (const ch of this.channels) {
            const p = this.pos.get(ch);
            if (p)
                resume[ch] = p;
            else
                plain.push(ch);
        }
        // plain subscribe first: its ack comes at once, before the replay
        if (plain.length)
            this.sendSubscribe(plain);
        if (Object.keys(resume).length)
            this.startResume(resume);
        else
            this.goLive();
    }
    goLive() {
        this.attempt = 0;
        if (this._state !== "live")
            this.setState("live", {});
    }
    startResume(positions) {
        const snap = {};
        for (const ch of Object.keys(positions))
            snap[ch] = { p: positions[ch].p, seq: positions[ch].seq };
        this.resumeInFlight = snap;
        this.resumeSawReplay = false;
        if (this._state !== "resuming")
            this.setState("resuming", {});
        this.sendRaw(buildResumeMessage(snap));
    }
    finishResume() {
        this.resumeInFlight = null;
        const q = this.queuedResume;
        const s = this.queuedSubscribe;
        this.queuedResume = {};
        this.queuedSubscribe = [];
        if (s.length)
            this.sendSubscribe(s);
        const left = {};
        for (const ch of Object.keys(q))
            if (this.channels.has(ch))
                left[ch] = this.pos.get(ch) ?? q[ch];
        if (Object.keys(left).length)
            this.startResume(left);
        else
            this.goLive();
    }
    sendSubscribe(channels) {
        this.subsAwaitingAck++;
        this.send({ type: "subscribe", data: { channels } });
    }
    send(msg) {
        this.sendRaw(JSON.stringify(msg));
    }
    sendRaw(text) {
        const ws = this.ws;
        if (!ws)
            return;
        try {
            ws.send(text);
        }
        catch {
            // a socket that cannot send is dead: its close comes, or the
            // heartbeat check finds it
        }
    }
    /* ---- heartbeats ------------------------------------------------------- */
    scheduleHeartbeat() {
        this.heartbeatTimer = this.clock.setTimeout(() => this.heartbeatTick(), this.opts.heartbeatIntervalMs);
    }
    heartbeatTick() {
        this.heartbeatTimer = null;
        const ws = this.ws;
        if (!ws || this.stopped)
            return;
        const silent = this.clock.now() - this.lastRx;
        if (silent >= this.opts.heartbeatIntervalMs + this.opts.heartbeatTimeoutMs) {
            this.abandon(ws, 4000, "dead link");
            return;
        }
        // a heartbeat is a request; while a resume is in flight none is
        // sent, so an `error` reply is never ambiguous (the replay itself
        // keeps the link busy, and its ack comes within RESUME_TIMEOUT_MS)
        if (!this.resumeInFlight)
            this.send({ type: "heartbeat" });
        // next check: when the silence would reach the limit, at the latest
        const due = this.opts.heartbeatIntervalMs + this.opts.heartbeatTimeoutMs - silent;
        this.heartbeatTimer = this.clock.setTimeout(() => this.heartbeatTick(), Math.max(1, Math.min(this.opts.heartbeatIntervalMs, due)));
    }
    /* ---- input ------------------------------------------------------------ */
    onMessage(data) {
        this.lastRx = this.clock.now();
        const text = messageText(data);
        if (text === null)
            return;
        let m;
        try {
            m = JSON.parse(text);
        }
        catch {
            return;
        }
        if (!m || typeof m !== "object")
            return;
        if (typeof m.channel === "string" && typeof m.seq === "number" && typeof m.p === "number") {
            this.onEnvelope(m);
            return;
        }
        switch (m.type) {
            case "subscription_ack":
                if (this.subsAwaitingAck > 0)
                    this.subsAwaitingAck--;
                this.emit("subscribed", m);
                break;
            case "unsubscription_ack":
                this.emit("unsubscribed", m);
                break;
            case "pong":
                this.emit("pong", m);
                break;
            case "reconnect_ack": {
                const from = this.resumeInFlight ?? {};
                const gen = this.gen;
                this._stats.resumes++;
                this.emit("resumed", {
                    url: this.url,
                    replayed: typeof m.replayed === "number" ? m.replayed : 0,
                    channels: Array.isArray(m.subscribed) ? m.subscribed : Object.keys(from),
                    from,
                });
                if (gen === this.gen)
                    this.finishResume();
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
                }
                else if (this.resumeInFlight && !this.resumeSawReplay) {
                    // the reconnect itself was refused: nothing was subscribed
                    this.resumeFailed(code, message, true);
                }
                else {
                    this.emit("error", { code, message, url: this.url });
                }
                break;
            }
            default:
                break;
        }
    }
    /** One refetch per channel of the failed request. */
    resumeFailed(code, message, resubscribe) {
        const req = this.resumeInFlight ?? {};
        const gen = this.gen;
        const url = this.url;
        // every channel of the request gets its event, whatever a listener
        // does meanwhile; the connection work below only if still ours
        for (const ch of Object.keys(req)) {
            if (!this.channels.has(ch))
                continue;
            this._stats.refetches++;
            this.emit("refetch", { channel: ch, code, message, position: req[ch], url });
        }
        if (gen !== this.gen)
            return;
        if (resubscribe) {
            const chs = Object.keys(req).filter((c) => this.channels.has(c));
            if (chs.length)
                this.sendSubscribe(chs);
        }
        this.finishResume();
    }
    onEnvelope(env) {
        const ch = env.channel;
        const last = this.pos.get(ch);
        const replay = env.replay === true;
        if (replay)
            this.resumeSawReplay = true;
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
        }
        else {
            this.pos.set(ch, { p: env.p, seq: env.seq });
        }
        this._stats.received++;
        if (replay)
            this._stats.replayed++;
        this.emit("message", env);
    }
    addChannel(ch) {
        if (!isValidChannel(ch))
            throw new TypeError(`OdinClient: invalid channel "${ch}"`);
        this.channels.add(ch);
    }
}
