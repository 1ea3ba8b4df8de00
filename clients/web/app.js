// The live page: OdinClients (clients/js) against the shards listed in the
// query string, with per-channel counts of gaps and duplicates.
//
//   index.html?ws=ws://127.0.0.1:3101/ws,ws://127.0.0.1:3102/ws&channels=BTC.trade,ETH.trade&clients=3
//
// Machine-readable status for browser tests: window.odinStats (below) and
// the same JSON in <body data-odin-stats>; <body data-odin-ready="true">
// once every connection has been live; each connection row carries
// data-state.  With `record=1` in the query string, window.odinReceived
// holds, per connection and channel, every position [p, seq] the
// application received (after the library's duplicate drop), for tests
// that compare the stream with Kafka; at most RECORD_MAX per connection.
import { OdinClient } from "../js/dist/index.js";

const q = new URLSearchParams(location.search);
const urls = (q.get("ws") || `ws://${location.hostname || "127.0.0.1"}:3002/ws`).split(",").filter(Boolean);
const channels = (q.get("channels") || "BTC.trade,ETH.trade,SOL.trade").split(",").filter(Boolean);
const nClients = Math.max(1, Math.min(32, Number(q.get("clients") || Math.min(3, urls.length))));
const LOG_MAX = 200;
const RECORD_MAX = 100000;
const record = q.get("record") === "1";

const stats = {
    received: 0, gaps: 0, dups: 0, dupsDropped: 0, resumes: 0, replayed: 0, refetches: 0,
    states: [], urls, channels: {}, connections: [], ready: false,
};
window.odinStats = stats;
// [{channel: [[p, seq], ...]}] per connection, and whether RECORD_MAX cut it
const received = record ? { connections: [], truncated: false } : null;
if (record) window.odinReceived = received;

const chans = new Map(); // channel -> aggregate row
for (const ch of channels) {
    chans.set(ch, { received: 0, replayed: 0, gaps: 0, dups: 0, last: null, lastSeq: null, lastType: "", times: [] });
}
const conns = [];

function logEvent(cls, text) {
    const li = document.createElement("li");
    li.className = cls;
    li.textContent = `${new Date().toISOString().slice(11, 23)} ${text}`;
    const ol = document.getElementById("log");
    ol.prepend(li);
    while (ol.children.length > LOG_MAX) ol.lastChild.remove();
}

for (let i = 0; i < nClients; i++) {
    const order = urls.map((_, k) => urls[(i + k) % urls.length]); // start on shard i
    const client = new OdinClient({ urls: order, urlOrder: "ordered", channels });
    const c = { i, client, state: "closed", url: order[0], connects: 0, resumes: 0, replayed: 0,
        refetches: 0, tokenSeq: new Map(), everLive: false, recorded: 0 };
    conns.push(c);
    if (record) received.connections.push({});
    client.on("state", (s) => {
        c.state = s.state;
        c.url = s.url;
        if (s.state === "live") c.everLive = true;
        const extra = s.state === "backoff" ? ` in ${s.delayMs} ms (attempt ${s.attempt}, ${s.reason})` : "";
        logEvent("state", `#${i} ${s.previous} → ${s.state} ${s.url}${extra}`);
    });
    client.on("open", () => { c.connects++; });
    client.on("resumed", (r) => {
        c.resumes++;
        c.replayed += r.replayed;
        stats.resumes++;
        stats.replayed += r.replayed;
        const from = Object.entries(r.from).map(([ch, p]) => `${ch}@${p.p}:${p.seq}`).join(" ");
        logEvent("resumed", `#${i} resumed on ${r.url}: ${r.replayed} replayed (${from})`);
    });
    client.on("refetch", (r) => {
        c.refetches++;
        stats.refetches++;
        const row = chans.get(r.channel);
        if (row) row.gaps++;
        stats.gaps++;
        c.tokenSeq.delete(r.channel); // a refetched stream starts over
        logEvent("refetch", `#${i} REFETCH ${r.channel} ${r.code}: ${r.message}`);
    });
    client.on("duplicate", () => { stats.dupsDropped++; });
    client.on("error", (e) => logEvent("error", `#${i} error ${e.code}: ${e.message}`));
    client.on("message", (m) => onMessage(c, m));
}

function onMessage(c, m) {
    stats.received++;
    const row = chans.get(m.channel);
    if (!row) return; // a broadcast (*.system): not counted per channel
    row.received++;
    if (record) {
        const rc = received.connections[c.i];
        const list = rc[m.channel] || (rc[m.channel] = []);
        if (c.recorded < RECORD_MAX) { list.push([m.p, m.seq]); c.recorded++; } else received.truncated = true;
    }
    if (m.replay) row.replayed++;
    row.last = `${m.p}:${m.seq}`;
    row.lastType = m.data && typeof m.data === "object" ? m.data.type || "" : "";
    row.times.push(performance.now());
    // gaps / duplicates by the publisher's per-(token, topic) counter
    const ts = m.data && m.data.data && typeof m.data.data.token_seq === "number" ? m.data.data.token_seq : null;
    if (ts === null) return;
    row.lastSeq = ts;
    const prev = c.tokenSeq.get(m.channel);
    if (prev !== undefined) {
        if (ts === 1 && prev > 1) {
            // the publisher restarted: its counter starts again
        } else if (ts <= prev) {
            row.dups++;
            stats.dups++;
            logEvent("refetch", `#${c.i} DUPLICATE ${m.channel} token_seq ${ts} after ${prev}`);
            return;
        } else if (ts > prev + 1) {
            row.gaps += ts - prev - 1;
            stats.gaps += ts - prev - 1;
            logEvent("refetch", `#${c.i} GAP ${m.channel} token_seq ${prev} → ${ts}`);
        }
    }
    c.tokenSeq.set(m.channel, ts);
}

function td(text, cls) {
    const e = document.createElement("td");
    e.textContent = text;
    if (cls) e.className = cls;
    return e;
}

function render() {
    const now = performance.now();
    const cb = document.querySelector("#conns tbody");
    cb.replaceChildren(...conns.map((c) => {
        const tr = document.createElement("tr");
        tr.dataset.state = c.state;
        tr.dataset.conn = String(c.i);
        const st = td("");
        const span = document.createElement("span");
        span.className = `state state-${c.state}`;
        span.textContent = c.state;
        st.append(span);
        const btn = document.createElement("button");
        btn.textContent = "reconnect";
        btn.onclick = () => { c.client.close(); c.client.connect(); };
        const bt = td("");
        bt.append(btn);
        tr.append(td(String(c.i)), st, td(c.url, "url"), td(c.connects), td(c.resumes), td(c.replayed),
            td(c.refetches, c.refetches ? "bad" : ""), td(c.client.stats().duplicates), bt);
        return tr;
    }));
    const tb = document.querySelector("#chans tbody");
    tb.replaceChildren(...[...chans].map(([ch, r]) => {
        r.times = r.times.filter((t) => now - t < 5000);
        const tr = document.createElement("tr");
        tr.dataset.channel = ch;
        tr.append(td(ch), td(r.received), td((r.times.length / 5).toFixed(1)), td(r.last ?? "-"),
            td(r.lastSeq ?? "-"), td(r.replayed), td(r.gaps, r.gaps ? "bad" : ""),
            td(r.dups, r.dups ? "bad" : ""), td(r.lastType, "data"));
        return tr;
    }));
    stats.states = conns.map((c) => c.state);
    stats.connections = conns.map((c) => ({ state: c.state, url: c.url, connects: c.connects,
        resumes: c.resumes, refetches: c.refetches }));
    for (const [ch, r] of chans) {
        stats.channels[ch] = { received: r.received, replayed: r.replayed, gaps: r.gaps, dups: r.dups, last: r.last };
    }
    stats.ready = conns.every((c) => c.everLive);
    document.body.dataset.odinReady = String(stats.ready);
    document.body.dataset.odinStats = JSON.stringify({ received: stats.received, gaps: stats.gaps,
        dups: stats.dups, dupsDropped: stats.dupsDropped, resumes: stats.resumes, replayed: stats.replayed,
        refetches: stats.refetches, states: stats.states });
    document.getElementById("summary").innerHTML = "";
    for (const [k, v] of [["received", stats.received], ["resumes", stats.resumes], ["replayed", stats.replayed],
        ["gaps", stats.gaps], ["dups", stats.dups], ["refetches", stats.refetches]]) {
        const s = document.createElement("span");
        s.innerHTML = `${k} <b class="${(k === "gaps" || k === "dups" || k === "refetches") && v ? "bad" : ""}"></b>`;
        s.querySelector("b").textContent = String(v);
        document.getElementById("summary").append(s);
    }
}

document.getElementById("foot").textContent =
    `shards: ${urls.join(", ")} · channels: ${channels.join(", ")} · ${nClients} connection(s)`;
render();
setInterval(render, 250);
