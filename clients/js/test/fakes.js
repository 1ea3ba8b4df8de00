// Test doubles: a scripted WebSocket and a manual clock.

export class FakeClock {
    constructor() {
        this.t = 1000;
        this.timers = new Map();
        this.nextId = 1;
    }
    now() {
        return this.t;
    }
    setTimeout(fn, ms) {
        const id = this.nextId++;
        this.timers.set(id, { at: this.t + Math.max(0, ms), fn, id });
        return id;
    }
    clearTimeout(id) {
        this.timers.delete(id);
    }
    /** Runs every timer due within ms, in time order, advancing the clock. */
    advance(ms) {
        const end = this.t + ms;
        for (;;) {
            let first = null;
            for (const tm of this.timers.values()) {
                if (tm.at <= end && (!first || tm.at < first.at || (tm.at === first.at && tm.id < first.id))) first = tm;
            }
            if (!first) break;
            this.timers.delete(first.id);
            this.t = first.at;
            first.fn();
        }
        this.t = end;
    }
    pending() {
        return [...this.timers.values()].map((t) => t.at - this.t).sort((a, b) => a - b);
    }
}

/** new FakeWebSocket(url) records itself in FakeWebSocket.instances. */
export function fakeWebSocketClass() {
    class FakeWebSocket {
        constructor(url) {
            this.url = url;
            this.readyState = 0;
            this.sent = [];
            this.closed = null;
            this.onopen = this.onmessage = this.onclose = this.onerror = null;
            FakeWebSocket.instances.push(this);
        }
        send(data) {
            if (this.readyState !== 1) throw new Error("not open");
            this.sent.push(JSON.parse(data));
        }
        close(code, reason) {
            this.closed = { code, reason };
            this.readyState = 3;
        }
        // --- driven by the test ---
        open() {
            this.readyState = 1;
            this.onopen && this.onopen({});
        }
        recv(obj) {
            this.onmessage && this.onmessage({ data: typeof obj === "string" ? obj : JSON.stringify(obj) });
        }
        serverClose(code = 1006, reason = "") {
            this.readyState = 3;
            this.onclose && this.onclose({ code, reason });
        }
    }
    FakeWebSocket.instances = [];
    FakeWebSocket.last = () => FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
    return FakeWebSocket;
}

export function env(seq, p, channel, extra = {}) {
    return { seq, p, ts: 1, type: "price:update", priority: 1, channel, ...extra, data: { n: seq } };
}
