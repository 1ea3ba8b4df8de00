// Integration driver for tests/it/js_client.sh: N OdinClients (with `ws` as
// the WebSocket) subscribed to TOKENS.trade, started on the first URL.
//
//   node resume_clients.mjs DIR N TOKENS URL1,URL2,URL3
//
// Writes DIR/ready once every client is live and acked, DIR/progress
// (messages received in all) as they come, and waits for DIR/expected
// ("token partition offset" lines, what Kafka holds for the tokens, written
// by the shell test after the producer finished).  Then it waits until every
// client has each token's last offset (or 60 s) and compares, per client and
// token, the list of (p, seq) handed to the application with Kafka's:
// exactly equal (no gap, no duplicate, in order), else it exits 1.
// Prints one JSON summary line.
import fs from "node:fs";
import path from "node:path";
import WebSocket from "ws";
import { OdinClient } from "../../dist/index.js";

const [dir, nArg, tokensArg, urlsArg] = process.argv.slice(2);
const N = Number(nArg);
const tokens = tokensArg.split(",");
const urls = urlsArg.split(",");
const channels = tokens.map((t) => `${t}.trade`);

const clients = [];
let total = 0;
for (let i = 0; i < N; i++) {
    // all start on urls[0]; half go on to urls[1], half to urls[2]
    const order = i % 2 === 0 ? urls : [urls[0], ...urls.slice(1).reverse()];
    const c = new OdinClient({
        urls: order,
        urlOrder: "ordered",
        WebSocket,
        channels,
        backoff: { baseMs: 200, maxMs: 2000 },
        heartbeatIntervalMs: 2000,
        heartbeatTimeoutMs: 3000,
    });
    const rec = { c, got: new Map(), acked: false, states: [], refetch: [], resumed: [], dups: 0, errors: [] };
    for (const t of tokens) rec.got.set(t, []);
    c.on("subscribed", () => { rec.acked = true; });
    c.on("message", (m) => {
        const tok = m.channel.slice(0, m.channel.lastIndexOf("."));
        rec.got.get(tok)?.push([m.p, m.seq]);
        total++;
    });
    c.on("state", (s) => rec.states.push(s.state + (s.state === "connecting" ? "@" + s.url : "")));
    c.on("refetch", (r) => rec.refetch.push(`${r.channel}:${r.code}`));
    c.on("resumed", (r) => rec.resumed.push({ url: r.url, replayed: r.replayed }));
    c.on("duplicate", () => { rec.dups++; });
    c.on("error", (e) => rec.errors.push(e.code));
    clients.push(rec);
}

const wait = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(pred, ms) {
    const end = Date.now() + ms;
    while (!pred()) {
        if (Date.now() > end) return false;
        await wait(20);
    }
    return true;
}

if (!(await until(() => clients.every((r) => r.acked && r.c.state === "live"), 20000))) {
    console.error("clients did not all get live + subscription_ack");
    process.exit(2);
}
fs.writeFileSync(path.join(dir, "ready"), "ok\n");
const progress = setInterval(() => fs.writeFileSync(path.join(dir, "progress.tmp"), `${total}\n`) ||
    fs.renameSync(path.join(dir, "progress.tmp"), path.join(dir, "progress")), 50);

await until(() => fs.existsSync(path.join(dir, "expected.done")), 300000);
const expected = new Map(tokens.map((t) => [t, []]));
for (const line of fs.readFileSync(path.join(dir, "expected"), "utf8").split("\n")) {
    const [t, p, o] = line.trim().split(/\s+/);
    if (expected.has(t)) expected.get(t).push([Number(p), Number(o)]);
}
for (const l of expected.values()) l.sort((a, b) => a[0] - b[0] || a[1] - b[1]);

const lastOf = (l) => (l.length ? l[l.length - 1] : null);
const done = (r) => tokens.every((t) => {
    const want = lastOf(expected.get(t));
    const got = lastOf(r.got.get(t));
    return !want || (got && got[0] === want[0] && got[1] >= want[1]);
});
const complete = await until(() => clients.every(done), 60000);
clearInterval(progress);

let ok = complete;
const failures = [];
const per = [];
let received = 0, produced = 0, missing = 0, extra = 0, dups = 0, resumes = 0, replayed = 0, refetches = 0;
for (const t of tokens) produced += expected.get(t).length;
clients.forEach((r, i) => {
    const line = { client: i, resumed: r.resumed, states: r.states, refetch: r.refetch, dropped_dups: r.dups };
    for (const t of tokens) {
        const want = expected.get(t).map(([p, o]) => `${p}:${o}`);
        const got = r.got.get(t).map(([p, o]) => `${p}:${o}`);
        received += got.length;
        const gs = new Set(got), ws = new Set(want);
        const miss = want.filter((x) => !gs.has(x));
        const ext = got.filter((x) => !ws.has(x));
        const dup = got.length - gs.size;
        missing += miss.length; extra += ext.length; dups += dup;
        if (miss.length || ext.length || dup || got.join() !== want.join()) {
            ok = false;
            failures.push({ client: i, token: t, produced: want.length, received: got.length,
                missing: miss.slice(0, 10), missing_n: miss.length, extra: ext.slice(0, 10), dup });
        }
    }
    resumes += r.resumed.length;
    replayed += r.resumed.reduce((a, x) => a + x.replayed, 0);
    refetches += r.refetch.length;
    if (r.refetch.length) ok = false;
    per.push(line);
    r.c.close();
});
// every client must actually have resumed (the test is about resume)
if (clients.some((r) => r.resumed.length === 0)) ok = false;
const summary = { ok, complete, clients: N, tokens: tokens.length, produced_per_client: produced,
    received, missing, extra, duplicates_delivered: dups, resumes, replayed, refetches,
    duplicates_dropped: clients.reduce((a, r) => a + r.dups, 0), failures, per };
console.log(JSON.stringify(summary));
process.exit(ok ? 0 : 1);
