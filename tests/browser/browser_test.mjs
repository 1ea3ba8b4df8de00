// Drives headless Chromium (Debian's `chromium`) through the DevTools
// protocol over --remote-debugging-pipe: no npm package, no browser
// download.  Run by tests/it/browser.sh, which starts the stack and the
// publisher; the two coordinate through files in DIR:
//
//   this script                                  tests/it/browser.sh
//   page live on every connection -> DIR/ready
//                                                 routes in Redis, publisher
//   page received >= KILL_AFTER: SIGKILL the
//   shard of connection 0 -> DIR/killed
//   resumed, live again, received more
//                                  -> DIR/resumed
//                                                 publisher stopped, Kafka read
//                                                 back: DIR/expected ("key p o"),
//                                                 then DIR/expected.done
//   page settled; compare, screenshot, summary (stdout, JSON); exit 0 or 1
//
// Environment: BROWSER (chromium binary), PAGE_URL, DIR, SHARD_PIDS
// ("ws-url=pid,..."), KILL_AFTER (records the page must have before the
// kill), MORE_AFTER (records more after the resume), TIMEOUT_S (per phase),
// SCREENSHOT (PNG path).
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { checkDeflate } from "./deflate.mjs";

const env = (k, d) => process.env[k] ?? d;
const DIR = env("DIR");
const PAGE_URL = env("PAGE_URL");
const TIMEOUT_MS = Number(env("TIMEOUT_S", "30")) * 1000;
const KILL_AFTER = Number(env("KILL_AFTER", "100"));
const MORE_AFTER = Number(env("MORE_AFTER", "100"));
const SCREENSHOT = env("SCREENSHOT", `${DIR}/live-page.png`);
const shardPids = new Map(env("SHARD_PIDS", "").split(",").filter(Boolean).map((kv) => {
    const i = kv.lastIndexOf("=");
    return [kv.slice(0, i), Number(kv.slice(i + 1))];
}));
const log = (...a) => process.stderr.write(`${new Date().toISOString().slice(11, 23)} ${a.join(" ")}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- Chromium and the DevTools pipe --------------------------------------
const profile = `${DIR}/chromium-profile`;
mkdirSync(profile, { recursive: true });
const chromium = spawn(env("BROWSER", "chromium"), [
    "--headless=new", "--no-sandbox", "--remote-debugging-pipe", `--user-data-dir=${profile}`,
    "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-extensions", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--mute-audio", "--password-store=basic",
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--window-size=1280,800", "about:blank",
], { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
let chromiumExit = null;
chromium.on("exit", (code, sig) => { chromiumExit = `exit ${code} signal ${sig}`; });
let chromiumErr = "";
chromium.stderr.on("data", (d) => { chromiumErr = (chromiumErr + d).slice(-4000); });

let nextId = 0;
const pending = new Map();
const handlers = new Map(); // method -> fn(params)
let inbuf = "";
chromium.stdio[4].on("data", (d) => {
    inbuf += d.toString("utf8");
    let i;
    while ((i = inbuf.indexOf("\0")) >= 0) {
        const msg = JSON.parse(inbuf.slice(0, i));
        inbuf = inbuf.slice(i + 1);
        if (msg.id !== undefined && pending.has(msg.id)) {
            const { resolve, reject, method } = pending.get(msg.id);
            pending.delete(msg.id);
            if (msg.error) reject(new Error(`${method}: ${msg.error.message}`));
            else resolve(msg.result);
        } else if (msg.method && handlers.has(msg.method)) {
            handlers.get(msg.method)(msg.params);
        }
    }
});
chromium.stdio[3].on("error", () => {}); // EPIPE once Chromium is gone: reported by the timeouts
let sessionId;
function send(method, params = {}, toSession = true) {
    return new Promise((resolve, reject) => {
        if (chromiumExit) return reject(new Error(`chromium ended (${chromiumExit}): ${chromiumErr}`));
        const id = ++nextId;
        const timer = setTimeout(() => { // a browser that stopped answering
            pending.delete(id);
            reject(new Error(`${method}: no answer from chromium in 20 s`));
        }, 20000);
        pending.set(id, {
            resolve: (v) => { clearTimeout(timer); resolve(v); },
            reject: (e) => { clearTimeout(timer); reject(e); },
            method,
        });
        const m = { id, method, params };
        if (toSession && sessionId) m.sessionId = sessionId;
        chromium.stdio[3].write(JSON.stringify(m) + "\0");
    });
}

let exitCode = 1;
async function shutdown() {
    try { await Promise.race([send("Browser.close", {}, false), sleep(3000)]); } catch { /* gone */ }
    if (!chromiumExit) chromium.kill("SIGKILL");
}

// ---- what the browser reports about the page's WebSockets ------------------
const sockets = new Map(); // requestId -> {url, created, offer, status, answer, frameErrors, closed}
const frameErrors = [];
const pageErrors = [];
let killedUrl = null;
let killedAt = 0;
const sock = (id) => {
    if (!sockets.has(id)) sockets.set(id, { url: null, created: Date.now(), offer: null, status: null,
        answer: null, closed: null });
    return sockets.get(id);
};
const header = (h, name) => {
    for (const [k, v] of Object.entries(h || {})) if (k.toLowerCase() === name) return v;
    return null;
};
handlers.set("Network.webSocketCreated", (p) => { sock(p.requestId).url = p.url; });
handlers.set("Network.webSocketWillSendHandshakeRequest", (p) => {
    sock(p.requestId).offer = header(p.request.headers, "sec-websocket-extensions");
});
handlers.set("Network.webSocketHandshakeResponseReceived", (p) => {
    const s = sock(p.requestId);
    s.status = p.response.status;
    s.answer = header(p.response.headers, "sec-websocket-extensions");
    // the request headers as sent, when the browser reports them here only
    if (s.offer === null) s.offer = header(p.response.requestHeaders, "sec-websocket-extensions");
});
handlers.set("Network.webSocketFrameError", (p) => {
    const s = sock(p.requestId);
    frameErrors.push({ url: s.url, at: Date.now(), error: p.errorMessage, open: s.status === 101 });
    log(`webSocketFrameError ${s.url}: ${p.errorMessage}`);
});
handlers.set("Network.webSocketClosed", (p) => { sock(p.requestId).closed = Date.now(); });
handlers.set("Runtime.exceptionThrown", (p) => {
    const d = p.exceptionDetails;
    pageErrors.push(`${d.text} ${d.exception?.description ?? ""}`.trim());
});
handlers.set("Runtime.consoleAPICalled", (p) => {
    if (p.type === "error") pageErrors.push(`console.error: ${p.args.map((a) => a.value ?? a.description).join(" ")}`);
});

// ---- page helpers -------------------------------------------------------
async function evaluate(expr) {
    const r = await send("Runtime.evaluate", { expression: expr, returnByValue: true });
    if (r.exceptionDetails) throw new Error(`evaluate ${expr}: ${r.exceptionDetails.text}`);
    return r.result.value;
}
const stats = () => evaluate(`window.odinStats ? JSON.parse(JSON.stringify({received: odinStats.received,
    gaps: odinStats.gaps, dups: odinStats.dups, dupsDropped: odinStats.dupsDropped, resumes: odinStats.resumes,
    replayed: odinStats.replayed, refetches: odinStats.refetches, ready: odinStats.ready,
    states: odinStats.states, connections: odinStats.connections})) : null`);
// A frame error is acceptable only as the end of a connection to the shard
// the test killed (the reset of its socket), never a protocol error (a
// handshake answer the browser refused, a frame it could not decode).
const unexpectedFrameErrors = () => frameErrors.filter((e) => !(killedUrl && e.url === killedUrl &&
    e.at >= killedAt && /net::ERR_(CONNECTION_(RESET|REFUSED|CLOSED|ABORTED)|EMPTY_RESPONSE)/.test(e.error)));
async function waitFor(what, pred) { // polls the page's own counters, bounded
    const end = Date.now() + TIMEOUT_MS;
    let s = null;
    for (;;) {
        const bad = unexpectedFrameErrors();
        if (bad.length) throw new Error(`WebSocket frame error while waiting for ${what}: ${JSON.stringify(bad.slice(0, 3))}`);
        s = await stats();
        // what must never happen fails at once, not at the timeout
        if (s && (s.gaps || s.dups || s.refetches)) {
            throw new Error(`while waiting for ${what}: ${s.gaps} gaps, ${s.dups} duplicates, ${s.refetches} refetches on the page: ${JSON.stringify(s.connections)}`);
        }
        if (s && pred(s)) return s;
        if (Date.now() > end) throw new Error(`timeout (${TIMEOUT_MS / 1000} s) waiting for ${what}; page: ${JSON.stringify(s)}`);
        await sleep(100);
    }
}
async function waitFile(name) { // a phase of the shell script
    const end = Date.now() + 3 * TIMEOUT_MS;
    while (!existsSync(`${DIR}/${name}`)) {
        if (Date.now() > end) throw new Error(`timeout waiting for ${name} from the shell script`);
        await sleep(50);
    }
}

async function main() {
    await send("Browser.getVersion", {}, false).then((v) => log(`browser ${v.product}`));
    const { targetId } = await send("Target.createTarget", { url: "about:blank" }, false);
    ({ sessionId } = await send("Target.attachToTarget", { targetId, flatten: true }, false));
    await send("Network.enable");
    await send("Runtime.enable");
    await send("Page.enable");
    await send("Emulation.setDeviceMetricsOverride", { width: 1280, height: 800, deviceScaleFactor: 1, mobile: false });
    await send("Page.navigate", { url: PAGE_URL });

    const s0 = await waitFor("every connection live", (s) => s.ready && s.states.every((x) => x === "live"));
    log(`page live: ${JSON.stringify(s0.connections.map((c) => c.url))}`);
    writeFileSync(`${DIR}/ready`, "");

    const s1 = await waitFor(`${KILL_AFTER} records`, (s) => s.received >= KILL_AFTER);
    killedUrl = s1.connections[0].url;
    const pid = shardPids.get(killedUrl);
    if (!pid) throw new Error(`no shard pid for ${killedUrl}`);
    const atKill = s1.received;
    killedAt = Date.now();
    process.kill(pid, "SIGKILL");
    log(`SIGKILL shard ${pid} (${killedUrl}) of connection 0 after ${atKill} records`);
    writeFileSync(`${DIR}/killed`, `${pid}\n`);

    const s2 = await waitFor("resume and more records", (s) => s.resumes >= 1 &&
        s.states.every((x) => x === "live") && s.received >= atKill + MORE_AFTER);
    log(`resumed: ${JSON.stringify(s2.connections)}`);
    writeFileSync(`${DIR}/resumed`, "");

    await waitFile("expected.done");
    const expected = new Map(); // channel -> [[p, seq]]
    for (const line of readFileSync(`${DIR}/expected`, "utf8").split("\n")) {
        const [key, p, o] = line.split(" ");
        if (!key) continue;
        const ch = `${key}.trade`;
        if (!expected.has(ch)) expected.set(ch, []);
        expected.get(ch).push([Number(p), Number(o)]);
    }
    // settle: each connection has as many records per channel as Kafka holds
    // (or the bound runs out and the comparison below says what differs)
    const counts = () => evaluate(`odinReceived.connections.map((c) => Object.fromEntries(
        Object.entries(c).map(([k, v]) => [k, v.length])))`);
    // A page that stopped receiving while records are missing fails sooner:
    // nothing new for STALL_S (only shortens a failing run).
    const end = Date.now() + TIMEOUT_MS;
    const stallMs = Number(env("STALL_S", "5")) * 1000;
    let last = "", lastChange = Date.now();
    for (;;) {
        const cs = await counts();
        if (cs.every((c) => [...expected].every(([ch, l]) => (c[ch] ?? 0) >= l.length))) break;
        const k = JSON.stringify(cs);
        if (k !== last) { last = k; lastChange = Date.now(); }
        if (Date.now() > end || Date.now() - lastChange > stallMs) { log(`page did not settle: ${k}`); break; }
        await sleep(100);
    }
    // one more render of the page's counters before reading them
    await sleep(300);
    const fin = await stats();
    const got = await evaluate("odinReceived");

    // exact comparison, per connection and channel
    const perConn = got.connections.map((c, i) => {
        const r = { conn: i, missing: 0, extra: 0, duplicates: 0, outOfOrder: 0, received: 0 };
        for (const [ch, want] of expected) {
            const have = c[ch] ?? [];
            r.received += have.length;
            const key = (x) => `${x[0]}:${x[1]}`;
            const wantSet = new Set(want.map(key));
            const seen = new Set();
            for (const x of have) {
                const k = key(x);
                if (seen.has(k)) r.duplicates++;
                else if (!wantSet.has(k)) r.extra++;
                seen.add(k);
            }
            for (const k of wantSet) if (!seen.has(k)) r.missing++;
            for (let j = 1; j < have.length; j++) {
                if (have[j][0] === have[j - 1][0] && have[j][1] <= have[j - 1][1]) r.outOfOrder++;
            }
            if (r.missing || r.extra || r.duplicates || r.outOfOrder) {
                let j = 0;
                while (j < have.length && j < want.length && key(have[j]) === key(want[j])) j++;
                r.firstDiff ??= { channel: ch, index: j, have: have.slice(j, j + 3), want: want.slice(j, j + 3) };
            }
        }
        r.exact = !r.missing && !r.extra && !r.duplicates && !r.outOfOrder;
        return r;
    });

    // the WebSocket handshakes: every answer to Chromium's offer valid
    const handshakes = [...sockets.values()].filter((s) => s.url);
    const deflate = handshakes.map((s) => ({ url: s.url, status: s.status, offer: s.offer, answer: s.answer,
        ...checkDeflate(s.offer, s.answer) }));
    const cases = [...new Set(deflate.filter((d) => d.status === 101).map((d) => d.case))];
    const badFrameErrors = unexpectedFrameErrors();

    await send("Page.bringToFront");
    const shot = await send("Page.captureScreenshot", { format: "png" });
    writeFileSync(SCREENSHOT, Buffer.from(shot.data, "base64"));

    const expectedTotal = [...expected.values()].reduce((n, l) => n + l.length, 0);
    const failures = [];
    if (expectedTotal === 0) failures.push("Kafka holds no record of the page's tokens");
    if (got.truncated) failures.push("the page's record of positions was truncated");
    for (const r of perConn) if (!r.exact) failures.push(`connection ${r.conn} differs from Kafka: ${JSON.stringify(r)}`);
    if (fin.gaps !== 0) failures.push(`page counted ${fin.gaps} gaps`);
    if (fin.dups !== 0) failures.push(`page counted ${fin.dups} duplicates`);
    if (fin.refetches !== 0) failures.push(`page had ${fin.refetches} refetches`);
    if (fin.resumes < 1) failures.push("no resume");
    if (!fin.states.every((x) => x === "live")) failures.push(`not every connection live: ${fin.states}`);
    if (pageErrors.length) failures.push(`page errors: ${pageErrors.slice(0, 5).join(" | ")}`);
    for (const d of deflate) {
        if (d.error) failures.push(`handshake with ${d.url}: ${d.error}`);
        if (d.url !== killedUrl && d.status !== 101) failures.push(`handshake with ${d.url}: status ${d.status}`);
    }
    if (!deflate.some((d) => d.status === 101 && /permessage-deflate/i.test(d.offer ?? ""))) {
        failures.push("Chromium offered no permessage-deflate (or no handshake was seen)");
    }
    if (badFrameErrors.length) failures.push(`WebSocket frame errors: ${JSON.stringify(badFrameErrors.slice(0, 3))}`);

    const summary = {
        ok: failures.length === 0, failures,
        connections: fin.connections.length, received: fin.received, expected_per_connection: expectedTotal,
        tokens: expected.size, gaps: fin.gaps, dups: fin.dups, dups_dropped: fin.dupsDropped,
        resumes: fin.resumes, replayed: fin.replayed, refetches: fin.refetches, states: fin.states,
        killed: killedUrl, per_connection: perConn.map((r) => ({ conn: r.conn, received: r.received, exact: r.exact })),
        deflate_offer: deflate.find((d) => d.offer)?.offer ?? null, deflate_cases: cases,
        handshakes: deflate.length, frame_errors: frameErrors.length, frame_errors_unexpected: badFrameErrors.length,
        screenshot: SCREENSHOT,
    };
    process.stdout.write(JSON.stringify(summary) + "\n");
    exitCode = summary.ok ? 0 : 1;
}

main().catch((e) => {
    log(`error: ${e.stack || e}`);
    process.stdout.write(JSON.stringify({ ok: false, failures: [String(e.message || e)] }) + "\n");
    exitCode = 1;
}).finally(async () => {
    await shutdown();
    process.exit(exitCode);
});
