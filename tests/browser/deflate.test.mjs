// node --test: checkDeflate accepts the valid answers to Chromium's
// permessage-deflate offer and rejects the invalid ones (RFC 7692).
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkDeflate } from "./deflate.mjs";

const chromium = "permessage-deflate; client_max_window_bits";

test("no extension accepted: declined", () => {
    assert.equal(checkDeflate(chromium, null).case, "declined");
    assert.equal(checkDeflate(chromium, "").case, "declined");
});

test("valid acceptances", () => {
    for (const a of [
        "permessage-deflate",
        "permessage-deflate; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; client_max_window_bits=15",
        "permessage-deflate; client_max_window_bits=\"10\"",
        "permessage-deflate; server_max_window_bits=10",
        "Permessage-Deflate;Server_No_Context_Takeover",
    ]) {
        const r = checkDeflate(chromium, a);
        assert.equal(r.error, undefined, `${a}: ${r.error}`);
        assert.match(r.case, /^accepted/, a);
    }
    assert.equal(checkDeflate(chromium, "permessage-deflate; server_no_context_takeover").case,
        "accepted (server_no_context_takeover)");
});

test("invalid answers", () => {
    for (const [offer, a] of [
        ["permessage-deflate", "permessage-deflate; client_max_window_bits=15"], // not offered
        [chromium, "permessage-deflate; client_max_window_bits"],               // no value in an answer
        [chromium, "permessage-deflate; client_max_window_bits=16"],
        [chromium, "permessage-deflate; client_max_window_bits=7"],
        [chromium, "permessage-deflate; client_max_window_bits=08"],
        ["permessage-deflate; client_max_window_bits=10", "permessage-deflate; client_max_window_bits=12"],
        [chromium, "permessage-deflate; server_max_window_bits"],
        [chromium, "permessage-deflate; server_max_window_bits=20"],
        ["permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=11"],
        [chromium, "permessage-deflate; server_no_context_takeover=1"],
        [chromium, "permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
        [chromium, "permessage-deflate; x_unknown"],
        [chromium, "permessage-deflate, permessage-deflate"],
        [chromium, "x-webkit-deflate-frame"],
        [null, "permessage-deflate"],                                          // nothing offered
    ]) {
        const r = checkDeflate(offer, a);
        assert.equal(r.case, "invalid", `${offer} / ${a} -> ${JSON.stringify(r)}`);
        assert.ok(r.error);
    }
});
