// Unit tests of OdinClient against a fake WebSocket and a manual clock.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
    OdinClient, backoffCeiling, backoffDelay, buildResumeMessage, RESUME_ERROR_CODES,
} from "../dist/index.js";
import { FakeClock, fakeWebSocketClass, env } from "./fakes.js";

function setup(opts = {}) {
    const WS = fakeWebSocketClass();
    const clock = new FakeClock();
    const events = [];
    const client = new OdinClient({
        urls: ["ws://a/ws", "ws://b/ws", "ws://c/ws"],
        urlOrder: "ordered",
        WebSocket: WS,
        clock,
        random: () => 0.5,
        connectTimeoutMs: 1e9,
        heartbeatIntervalMs: 1e8,
        autoConnect: false,
        ...opts,
    });
    for (const k of ["state", "message", "duplicate", "refetch", "resumed", "error", "close", "open"]) {
        client.on(k, (ev) => events.push([k, ev]));
    }
    const of = (k) => events.filter((e) => e[0] === k).map((e) => e[1]);
    client.connect();
    return { WS, clock, client, events, of };
}

test("backoff: full jitter within [0, min(max, base*factor^n))", () => {
    const o = { baseMs: 100, maxMs: 5000, factor: 2 };
    const want = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000];
    want.forEach((c, n) => {
        assert.equal(backoffCeiling(n, o), c);
        assert.equal(backoffDelay(n, o, () => 0), 0);
        const hi = backoffDelay(n, o, () => 0.999999);
        assert.ok(hi < c && hi >= c - 1, `attempt ${n}: ${hi} vs ceiling ${c}`);
    });
    assert.equal(backoffCeiling(10000, o), 5000, "no overflow past max");
    assert.equal(backoffCeiling(0), 500, "default base");
    assert.equal(backoffCeiling(100), 30000, "default max");
});

test("backoff: delays are uniform over [0, ceiling) (no thundering herd)", () => {
    // a deterministic PRNG (mulberry32), so the test cannot flake
    let s = 12345;
    const rnd = () => {
        s |= 0; s = (s + 0x6d2b79f5) | 0;
        let t = Math.imul(s ^ (s >>> 15), 1 | s);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const o = { baseMs: 1000, maxMs: 8000 };
    const N = 20000, buckets = new Array(10).fill(0);
    let sum = 0;
    for (let i = 0; i < N; i++) {
        const d = backoffDelay(3, o, rnd);
        assert.ok(d >= 0 && d < 8000);
        sum += d;
        buckets[Math.floor(d / 800)]++;
    }
    assert.ok(Math.abs(sum / N - 4000) < 100, `mean ${sum / N}`);
    // chi-square, 9 degrees of freedom: 21.67 is the 1% critical value
    const chi = buckets.reduce((a, b) => a + (b - N / 10) ** 2 / (N / 10), 0);
    assert.ok(chi < 21.67, `chi-square ${chi}, buckets ${buckets}`);
    // 1000 clients reconnecting at once: no millisecond gets more than a few
    const perMs = new Map();
    for (let i = 0; i < 1000; i++) {
        const d = backoffDelay(0, { baseMs: 1000 }, rnd);
        perMs.set(d, (perMs.get(d) ?? 0) + 1);
    }
    assert.ok(Math.max(...perMs.values()) <= 6, "crowd spread over the window");
});

test("the client backs off with growing ceilings and resets once live", () => {
    const { WS, clock, of } = setup({ backoff: { baseMs: 100, maxMs: 1000 }, random: () => 0.99 });
    for (let i = 0; i < 6; i++) {
        WS.last().serverClose(1006);
        clock.advance(2000);
    }
    const delays = of("state").filter((s) => s.state === "backoff").map((s) => [s.attempt, s.delayMs]);
    assert.deepEqual(delays, [[0, 99], [1, 198], [2, 396], [3, 792], [4, 990], [5, 990]]);
    WS.last().open(); // live: no channels, so at once
    WS.last().serverClose(1006);
    const last = of("state").filter((s) => s.state === "backoff").pop();
    assert.deepEqual([last.attempt, last.delayMs], [0, 99]);
});

test("URLs: ordered goes round; random never retries the same one twice in a row", () => {
    const a = setup();
    for (let i = 0; i < 4; i++) { a.WS.last().serverClose(); a.clock.advance(60000); }
    assert.deepEqual(a.WS.instances.map((w) => w.url), ["ws://a/ws", "ws://b/ws", "ws://c/ws", "ws://a/ws", "ws://b/ws"]);
    let r = 0;
    const seq = [0.1, 0.9, 0.4, 0.6, 0.0, 0.99, 0.5, 0.3];
    const b = setup({ urlOrder: "random", random: () => seq[r++ % seq.length] });
    for (let i = 0; i < 20; i++) { b.WS.last().serverClose(); b.clock.advance(60000); }
    const urls = b.WS.instances.map((w) => w.url);
    for (let i = 1; i < urls.length; i++) assert.notEqual(urls[i], urls[i - 1]);
    assert.equal(new Set(urls).size, 3);
});

test("dedup by position: a record at or before the channel's position is dropped", () => {
    const { WS, client, of } = setup({ channels: ["BTC.trade", "ETH.trade"] });
    WS.last().open();
    for (const [seq, ch] of [[5, "BTC.trade"], [6, "BTC.trade"], [6, "BTC.trade"], [5, "BTC.trade"],
        [9, "ETH.trade"], [7, "BTC.trade"], [9, "ETH.trade"], [10, "ETH.trade"]]) {
        WS.last().recv(env(seq, 0, ch));
    }
    assert.deepEqual(of("message").map((m) => `${m.channel}:${m.seq}`),
        ["BTC.trade:5", "BTC.trade:6", "ETH.trade:9", "BTC.trade:7", "ETH.trade:10"]);
    assert.deepEqual(of("duplicate").map((d) => [d.channel, d.seq, d.last.seq]),
        [["BTC.trade", 6, 6], ["BTC.trade", 5, 6], ["ETH.trade", 9, 9]]);
    assert.equal(client.stats().duplicates, 3);
    assert.equal(client.stats().received, 5);
    assert.deepEqual(client.positions(), { "BTC.trade": { p: 0, seq: 7 }, "ETH.trade": { p: 0, seq: 10 } });
    // another partition is another position, not a duplicate
    WS.last().recv(env(1, 2, "BTC.trade"));
    assert.deepEqual(client.positions()["BTC.trade"], { p: 2, seq: 1 });
});

test("resume: the reconnect carries each channel's last position; new channels are subscribed", () => {
    const { WS, clock, client, of } = setup({ channels: ["BTC.trade", "ETH.trade", "SOL.trade"] });
    const first = WS.last();
    first.open();
    assert.deepEqual(first.sent, [{ type: "subscribe", data: { channels: ["BTC.trade", "ETH.trade", "SOL.trade"] } }]);
    first.recv({ type: "subscription_ack", subscribed: ["BTC.trade", "ETH.trade", "SOL.trade"], count: 3 });
    first.recv(env(41, 3, "BTC.trade"));
    first.recv(env(42, 3, "BTC.trade"));
    first.recv(env(77, 0, "ETH.trade"));
    first.serverClose(1006);
    client.subscribe("DOGE.trade"); // while disconnected
    clock.advance(60000);
    const second = WS.last();
    assert.notEqual(second, first);
    assert.equal(second.url, "ws://b/ws");
    second.open();
    assert.deepEqual(second.sent, [
        { type: "subscribe", data: { channels: ["SOL.trade", "DOGE.trade"] } },
        { type: "reconnect", data: { channels: { "BTC.trade": { p: 3, seq: 42 }, "ETH.trade": { p: 0, seq: 77 } } } },
    ]);
    assert.equal(buildResumeMessage({ "BTC.trade": { p: 3, seq: 42, x: 1 } }),
        '{"type":"reconnect","data":{"channels":{"BTC.trade":{"p":3,"seq":42}}}}');
    // the replay overlaps what we had; live records held by the shard follow
    second.recv({ type: "subscription_ack", subscribed: ["SOL.trade", "DOGE.trade"], count: 4 });
    second.recv(env(42, 3, "BTC.trade", { replay: true }));
    second.recv(env(43, 3, "BTC.trade", { replay: true }));
    second.recv({ type: "reconnect_ack", replayed: 2, subscribed: ["BTC.trade", "ETH.trade"], count: 4 });
    second.recv(env(43, 3, "BTC.trade"));
    second.recv(env(44, 3, "BTC.trade"));
    assert.deepEqual(of("message").filter((m) => m.channel === "BTC.trade").map((m) => m.seq), [41, 42, 43, 44]);
    assert.equal(of("resumed").length, 1);
    assert.deepEqual(of("resumed")[0].from, { "BTC.trade": { p: 3, seq: 42 }, "ETH.trade": { p: 0, seq: 77 } });
    assert.equal(client.stats().resumes, 1);
    assert.equal(client.stats().duplicates, 2);
    assert.equal(client.state, "live");
});

test("resume from a position the application gives (its snapshot's)", () => {
    const { WS, client } = setup({ channels: [] });
    WS.last().open();
    client.subscribe("BTC.trade", { p: 1, seq: 99 });
    assert.deepEqual(WS.last().sent, [{ type: "reconnect", data: { channels: { "BTC.trade": { p: 1, seq: 99 } } } }]);
    assert.equal(client.state, "resuming");
    // a second positional subscribe waits for the first one's answer
    client.subscribe("ETH.trade", { p: 0, seq: 5 });
    client.subscribe("SOL.trade");
    assert.equal(WS.last().sent.length, 1);
    WS.last().recv({ type: "reconnect_ack", replayed: 0, subscribed: ["BTC.trade"], count: 1 });
    assert.deepEqual(WS.last().sent.slice(1), [
        { type: "subscribe", data: { channels: ["SOL.trade"] } },
        { type: "reconnect", data: { channels: { "ETH.trade": { p: 0, seq: 5 } } } },
    ]);
    // subscribing again to a subscribed channel is a no-op
    client.subscribe("SOL.trade");
    assert.equal(WS.last().sent.length, 3);
    assert.throws(() => client.subscribe("not a channel"), TypeError);
});

for (const code of RESUME_ERROR_CODES) {
    test(`reconnect_error ${code}: one refetch per channel of the request, then live`, () => {
        const { WS, clock, client, of } = setup({ channels: ["BTC.trade", "ETH.trade", "SOL.trade"] });
        WS.last().open();
        WS.last().recv(env(10, 0, "BTC.trade"));
        WS.last().recv(env(20, 1, "ETH.trade"));
        WS.last().serverClose();
        clock.advance(60000);
        WS.last().open();
        assert.equal(client.state, "resuming");
        if (code === "TOO_FAR_BEHIND") WS.last().recv(env(11, 0, "BTC.trade", { replay: true }));
        WS.last().recv({ type: "reconnect_error", code, message: "m" });
        WS.last().recv(env(30, 1, "ETH.trade")); // live goes on
        const r = of("refetch");
        assert.deepEqual(r.map((e) => [e.channel, e.code, e.position]), [
            ["BTC.trade", code, { p: 0, seq: 10 }],
            ["ETH.trade", code, { p: 1, seq: 20 }],
        ]);
        assert.equal(client.state, "live");
        assert.equal(client.stats().refetches, 2);
        assert.equal(of("message").pop().seq, 30);
        // another drop: resumes from the newest positions, not the old ones
        WS.last().serverClose();
        clock.advance(60000);
        WS.last().open();
        const rc = WS.last().sent.find((m) => m.type === "reconnect");
        assert.deepEqual(rc.data.channels, {
            "BTC.trade": { p: 0, seq: code === "TOO_FAR_BEHIND" ? 11 : 10 },
            "ETH.trade": { p: 1, seq: 30 },
        });
    });
}

test("a reconnect refused with an error reply: refetch per channel and a plain subscribe", () => {
    const { WS, clock, of } = setup({ channels: ["BTC.trade", "ETH.trade"] });
    WS.last().open();
    WS.last().recv(env(10, 0, "BTC.trade"));
    WS.last().serverClose();
    clock.advance(60000);
    const ws = WS.last();
    ws.open();
    ws.recv({ type: "subscription_ack", subscribed: ["ETH.trade"], count: 1 });
    ws.recv({ type: "error", code: "TOO_MANY_SUBSCRIPTIONS", message: "x" });
    assert.deepEqual(of("refetch").map((e) => [e.channel, e.code]), [["BTC.trade", "TOO_MANY_SUBSCRIPTIONS"]]);
    assert.deepEqual(ws.sent.pop(), { type: "subscribe", data: { channels: ["BTC.trade"] } });
    assert.equal(of("error").length, 0);
});

test("heartbeats go out every interval; a silent link is declared dead", () => {
    const { WS, clock, of } = setup({ heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 500 });
    const ws = WS.last();
    ws.open();
    clock.advance(1000);
    assert.deepEqual(ws.sent, [{ type: "heartbeat" }]);
    ws.recv({ type: "pong", ts: 1 });
    clock.advance(1000);
    assert.equal(ws.sent.length, 2);
    ws.recv({ type: "pong", ts: 2 });
    // from now on nothing comes: dead 1500 ms after the last message
    clock.advance(1499);
    assert.equal(ws.closed, null);
    clock.advance(1);
    assert.deepEqual(ws.closed, { code: 4000, reason: "dead link" });
    const st = of("state").pop();
    assert.equal(st.state, "backoff");
    assert.equal(st.reason, "dead link");
    assert.equal(of("close").pop().byClient, true);
    // the abandoned socket's late close event changes nothing
    const n = of("state").length;
    ws.serverClose(1006);
    assert.equal(of("state").length, n);
});

test("a connect that never opens times out", () => {
    const { WS, clock, of } = setup({ connectTimeoutMs: 3000 });
    clock.advance(2999);
    assert.equal(WS.instances.length, 1);
    clock.advance(1);
    assert.equal(WS.instances[0].closed.reason, "connect timeout");
    assert.equal(of("state").pop().state, "backoff");
});

test("state events come in order: connecting, resuming, live, backoff, ..., closed", () => {
    const { WS, clock, client, of } = setup({ channels: ["BTC.trade"] });
    WS.last().open(); // nothing to resume: live at once
    WS.last().recv(env(1, 0, "BTC.trade"));
    WS.last().serverClose();
    clock.advance(60000);
    WS.last().open();
    WS.last().recv({ type: "reconnect_ack", replayed: 0, subscribed: ["BTC.trade"], count: 1 });
    WS.last().serverClose();
    clock.advance(60000);
    WS.last().open();
    WS.last().recv({ type: "reconnect_error", code: "RESUME_BUSY", message: "" });
    client.close();
    client.close();
    const states = of("state").map((s) => `${s.previous}>${s.state}`);
    assert.deepEqual(states, [
        "closed>connecting", "connecting>live", "live>backoff",
        "backoff>connecting", "connecting>resuming", "resuming>live", "live>backoff",
        "backoff>connecting", "connecting>resuming", "resuming>live", "live>closed",
    ]);
    // nothing happens after close()
    clock.advance(600000);
    assert.equal(WS.instances.length, 3);
    assert.equal(client.state, "closed");
});

test("unsubscribe drops the channel and its position", () => {
    const { WS, clock, client } = setup({ channels: ["BTC.trade", "ETH.trade"] });
    WS.last().open();
    WS.last().recv(env(1, 0, "BTC.trade"));
    WS.last().recv(env(2, 0, "ETH.trade"));
    client.unsubscribe(["ETH.trade"]);
    assert.deepEqual(WS.last().sent.pop(), { type: "unsubscribe", data: { channels: ["ETH.trade"] } });
    WS.last().serverClose();
    clock.advance(60000);
    WS.last().open();
    assert.deepEqual(WS.last().sent, [{ type: "reconnect", data: { channels: { "BTC.trade": { p: 0, seq: 1 } } } }]);
});

test("a listener that throws does not break the client", () => {
    const { WS, clock, client, of } = setup({ channels: ["BTC.trade"] });
    client.on("message", () => { throw new Error("app bug"); });
    WS.last().open();
    WS.last().recv(env(1, 0, "BTC.trade"));
    WS.last().recv(env(2, 0, "BTC.trade"));
    assert.equal(of("message").length, 2);
    // the exception is rethrown from a timer
    assert.throws(() => clock.advance(0), /app bug/);
});

test("no WebSocket constructor: a clear error (Node 18 has no global one)", { skip: typeof globalThis.WebSocket === "function" }, () => {
    assert.throws(() => new OdinClient({ urls: "ws://x/ws" }), /pass options.WebSocket/);
});

test("auto-connect waits for listeners added right after construction; close() before it wins", async () => {
    const WS = fakeWebSocketClass();
    const c = new OdinClient({ urls: "ws://a/ws", WebSocket: WS, clock: new FakeClock() });
    const seen = [];
    c.on("state", (s) => seen.push(s.state));
    assert.equal(WS.instances.length, 0);
    await Promise.resolve();
    assert.deepEqual(seen, ["connecting"]);
    const d = new OdinClient({ urls: "ws://a/ws", WebSocket: WS, clock: new FakeClock() });
    d.close();
    await Promise.resolve();
    assert.equal(WS.instances.length, 1);
    assert.equal(d.state, "closed");
});

test("a listener that closes the client stops the connection work in progress", () => {
    const { WS, clock, client, of } = setup({ channels: ["BTC.trade", "ETH.trade"] });
    WS.last().open();
    WS.last().recv(env(1, 0, "BTC.trade"));
    WS.last().recv(env(2, 0, "ETH.trade"));
    WS.last().serverClose();
    clock.advance(60000);
    client.on("refetch", () => client.close());
    WS.last().open();
    WS.last().recv({ type: "reconnect_error", code: "RESUME_BUSY", message: "" });
    // both channels still get their refetch; nothing moves after closed
    assert.deepEqual(of("refetch").map((r) => r.channel), ["BTC.trade", "ETH.trade"]);
    assert.equal(client.state, "closed");
    assert.equal(of("state").pop().state, "closed");
    clock.advance(600000);
    assert.equal(WS.instances.length, 2);
    // close() from an "open" listener: no resume goes out
    const b = setup({ channels: ["BTC.trade"] });
    b.WS.last().open();
    b.WS.last().recv(env(1, 0, "BTC.trade"));
    b.WS.last().serverClose();
    b.clock.advance(60000);
    b.client.on("open", () => b.client.close());
    b.WS.last().open();
    assert.deepEqual(b.WS.last().sent, []);
    assert.equal(b.of("state").pop().state, "closed");
});
