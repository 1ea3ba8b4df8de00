// permessage-deflate checks against a real odin-shard with a second
// WebSocket implementation (Node's `ws`), run by tests/it/deflate_ws.sh.
//
//   node deflate_check.js PORT RECORDS_TSV READY_FILE
//
// RECORDS_TSV holds "token<TAB>value" lines, the records the script
// produces once READY_FILE exists (topic category "trade").  Clients:
//   z_default  perMessageDeflate (ws default offer: client_max_window_bits)
//   z_cnct     ... with client_no_context_takeover
//   z_smwb15   ... with server_max_window_bits=15 (accepted)
//   z_smwb10   ... with server_max_window_bits=10 (declined: plain)
//   plain      no extension offered
// Each subscribes with one message (compressed for the deflate clients:
// threshold 0), receives every record of every token, and checks each
// payload byte for byte against the envelope built from the record value,
// RSV1 on every compressed frame (read from the raw socket), and that all
// clients received identical JSON.  Then a compressed bomb (small on the
// wire, 32 MiB inflated) must be answered with close 1009 while the
// shard's RSS grows by less than 8 MiB.
'use strict';
const fs = require('fs');
const http = require('http');
const WebSocket = require('ws');

const [port, recordsFile, readyFile] = process.argv.slice(2);
const url = `ws://127.0.0.1:${port}/ws`;
const records = fs.readFileSync(recordsFile, 'utf8').split('\n').filter(Boolean)
    .map((l) => { const i = l.indexOf('\t'); return { token: l.slice(0, i), value: l.slice(i + 1) }; });
const tokens = [...new Set(records.map((r) => r.token))];
const perToken = {};
for (const r of records) (perToken[r.token] = perToken[r.token] || []).push(r.value);

function fail(msg) {
    console.error('FAIL: ' + msg);
    process.exit(1);
}
const watchdog = setTimeout(() => fail('timed out'), 90000);

// Server frames are unmasked: parse the raw byte stream for RSV1 and sizes.
function frameTap(sock, st) {
    let acc = Buffer.alloc(0);
    sock.on('data', (d) => {
        acc = Buffer.concat([acc, d]);
        for (;;) {
            if (acc.length < 2) return;
            let len = acc[1] & 0x7f, h = 2;
            if (len === 126) { if (acc.length < 4) return; len = acc.readUInt16BE(2); h = 4; }
            else if (len === 127) { if (acc.length < 10) return; len = Number(acc.readBigUInt64BE(2)); h = 10; }
            if (acc.length < h + len) return;
            const op = acc[0] & 0x0f, rsv1 = (acc[0] & 0x40) !== 0;
            if (op === 1 || op === 2) {
                st.frames++;
                st.wire += h + len;
                if (rsv1) st.rsv1++;
            } else if (rsv1) {
                fail('RSV1 on a control frame');
            }
            acc = acc.subarray(h + len);
        }
    });
}

function client(name, pmd, expectExt) {
    return new Promise((resolve) => {
        const ws = new WebSocket(url, { perMessageDeflate: pmd });
        const st = { name, ws, frames: 0, rsv1: 0, wire: 0, msgs: [], acked: false };
        ws.on('upgrade', (res) => {
            const ext = res.headers['sec-websocket-extensions'] || '';
            if (!expectExt(ext)) fail(`${name}: unexpected Sec-WebSocket-Extensions "${ext}"`);
            st.ext = ext;
        });
        ws.on('open', () => {
            frameTap(ws._socket, st);
            ws.send(JSON.stringify({ type: 'subscribe', data: { channels: tokens.map((t) => t + '.trade') } }));
        });
        ws.on('message', (data, isBinary) => {
            const s = data.toString('utf8');
            if (isBinary) fail(`${name}: binary message`);
            const m = JSON.parse(s);
            if (m.type === 'subscription_ack') {
                if (m.count !== tokens.length) fail(`${name}: ack ${s}`);
                st.acked = true;
                resolve(st);
                return;
            }
            if (m.type === 'error') fail(`${name}: error ${s}`);
            st.msgs.push(s);
        });
        ws.on('error', (e) => fail(`${name}: ${e.message}`));
        ws.on('close', (code) => { if (!st.done) fail(`${name}: closed early (${code})`); });
    });
}

const has = (ext, p) => ext.split(';').map((x) => x.trim()).includes(p);
const deflateAnswer = (ext) => has(ext, 'permessage-deflate') && has(ext, 'server_no_context_takeover') &&
    has(ext, 'client_no_context_takeover');

function health() {
    return new Promise((resolve, reject) => {
        http.get(`http://127.0.0.1:${port}/health`, (res) => {
            let b = '';
            res.on('data', (d) => { b += d; });
            res.on('end', () => resolve(JSON.parse(b)));
        }).on('error', reject);
    });
}

// The envelope the shard must send for a record (docs/protocol.md); seq, p
// and ts are the record's position, taken from the message itself.
function checkEnvelope(name, tok, i, s) {
    const m = /^\{"seq":(\d+),"p":(\d+),"ts":(\d+),/.exec(s);
    if (!m) fail(`${name}: envelope prefix: ${s.slice(0, 80)}`);
    const want = `{"seq":${m[1]},"p":${m[2]},"ts":${m[3]},"type":"price:update","priority":1,` +
        `"channel":"${tok}.trade","data":${perToken[tok][i]}}`;
    if (s !== want) fail(`${name}: message ${i} of ${tok} differs:\n got ${s}\nwant ${want}`);
}

async function main() {
    const total = records.length;
    const clients = await Promise.all([
        client('z_default', { threshold: 0 }, deflateAnswer),
        client('z_cnct', { threshold: 0, clientNoContextTakeover: true }, deflateAnswer),
        client('z_smwb15', { threshold: 0, serverMaxWindowBits: 15 },
            (e) => deflateAnswer(e) && has(e, 'server_max_window_bits=15')),
        client('z_smwb10', { threshold: 0, serverMaxWindowBits: 10 }, (e) => e === ''),
        client('plain', false, (e) => e === ''),
    ]);
    fs.writeFileSync(readyFile, 'ready\n');
    await new Promise((resolve) => {
        const t = setInterval(() => {
            if (clients.every((c) => c.msgs.length >= total)) { clearInterval(t); resolve(); }
        }, 20);
    });
    const plain = clients.find((c) => c.name === 'plain');
    for (const c of clients) {
        if (c.msgs.length !== total) fail(`${c.name}: ${c.msgs.length} messages, want ${total}`);
        const seen = {};
        for (const s of c.msgs) {
            const tok = /"channel":"([^"]+)\.trade"/.exec(s)[1];
            const i = seen[tok] = (seen[tok] === undefined ? 0 : seen[tok] + 1);
            checkEnvelope(c.name, tok, i, s);
        }
        // identical JSON to the plain client, in the same order
        for (let i = 0; i < total; i++)
            if (c.msgs[i] !== plain.msgs[i]) fail(`${c.name}: message ${i} differs from the plain client's`);
        const compressed = c.name.startsWith('z_') && c.name !== 'z_smwb10';
        // frames: the ack (short: plain) + the records (all compressible)
        if (compressed && c.rsv1 !== total) fail(`${c.name}: ${c.rsv1} RSV1 frames, want ${total}`);
        if (!compressed && c.rsv1 !== 0) fail(`${c.name}: RSV1 frames without the extension`);
        console.log(`${c.name}: ext="${c.ext}" messages=${c.msgs.length} rsv1=${c.rsv1} wire=${c.wire}`);
    }
    const z = clients.find((c) => c.name === 'z_default');
    if (!(z.wire < plain.wire)) fail(`compressed wire bytes ${z.wire} not below plain ${plain.wire}`);
    console.log(`wire ratio compressed/plain: ${(z.wire / plain.wire).toFixed(3)}`);
    for (const c of clients) { c.done = true; c.ws.close(1000); }

    // decompression bomb: 32 MiB of one byte, about 32 KiB compressed
    const before = (await health()).checks.memory.rss_bytes;
    const code = await new Promise((resolve) => {
        const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
        ws.on('upgrade', (res) => {
            if (!deflateAnswer(res.headers['sec-websocket-extensions'] || '')) fail('bomb: no extension');
        });
        ws.on('open', () => {
            ws.send(Buffer.alloc(32 << 20, 0x61).toString());
        });
        ws.on('close', (c) => resolve(c));
        ws.on('error', () => {});
        // the shard answers at once when it caps the inflated size
        setTimeout(() => { resolve('none within 20 s'); ws.terminate(); }, 20000);
    });
    if (code !== 1009) fail(`bomb: close code ${code}, want 1009`);
    const after = (await health()).checks.memory.rss_bytes;
    console.log(`bomb: close ${code}, shard rss ${before} -> ${after}`);
    if (after - before > 8 << 20) fail(`bomb: shard RSS grew by ${after - before} bytes`);
    clearTimeout(watchdog);
    console.log('ok');
}

main().catch((e) => fail(e.stack));
