// Integration driver for tests/it/js_client.sh: real shards refuse resumes,
// and the library turns each refusal into exactly one "refetch" per channel
// with the shard's code, then goes live.
//
//   node refetch_codes.mjs CASES_JSON
//   CASES_JSON: [{"url":..., "channels":{"T.trade":{"p":0,"seq":-1}}, "want":"TOO_FAR_BEHIND"}, ...]
//
// Prints one JSON line per case; exits 1 if any case got something else.
import WebSocket from "ws";
import { OdinClient } from "../../dist/index.js";

const cases = JSON.parse(process.argv[2]);
let ok = true;
for (const k of cases) {
    const c = new OdinClient({ urls: k.url, WebSocket, autoConnect: false });
    const refetch = [];
    const states = [];
    let replayed = 0;
    c.on("refetch", (r) => refetch.push({ channel: r.channel, code: r.code, position: r.position }));
    c.on("state", (s) => states.push(s.state));
    c.on("message", (m) => { if (m.replay) replayed++; });
    c.subscribe(Object.keys(k.channels), k.channels);
    c.connect();
    const end = Date.now() + 20000;
    const want = Object.keys(k.channels).length;
    while (!(refetch.length >= want && c.state === "live") && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 20));
    }
    // (a reconnect_error yields all its refetch events and the state
    // change in one go: nothing more can follow for this request)
    c.close();
    const good = refetch.length === want &&
        refetch.every((r) => r.code === k.want && k.channels[r.channel] &&
            r.position.p === k.channels[r.channel].p && r.position.seq === k.channels[r.channel].seq) &&
        states.join(",") === "connecting,resuming,live,closed";
    if (!good) ok = false;
    console.log(JSON.stringify({ ok: good, want: k.want, refetch, states, replayed }));
}
process.exit(ok ? 0 : 1);
