// The check of a WebSocket server's answer to a permessage-deflate offer
// (RFC 7692), used by browser_test.mjs on what Chromium offered and what
// the shard answered; its own tests: deflate.test.mjs.
//
// RFC 7692: the answer to the permessage-deflate offer.  Returns
// {case, error?}: "declined" (no extension accepted) or "accepted (...)".
export function checkDeflate(offer, answer) {
    if (answer === null || answer.trim() === "") return { case: "declined" };
    const parseList = (h) => h.split(",").map((e) => e.trim()).filter(Boolean).map((e) => {
        const [name, ...params] = e.split(";").map((x) => x.trim());
        return { name, params: params.filter(Boolean).map((p) => {
            const eq = p.indexOf("=");
            if (eq < 0) return { k: p.toLowerCase(), v: null };
            let v = p.slice(eq + 1).trim();
            if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
            return { k: p.slice(0, eq).trim().toLowerCase(), v };
        }) };
    });
    const offers = offer ? parseList(offer) : [];
    const acc = parseList(answer);
    if (acc.length !== 1) return { case: "invalid", error: `${acc.length} extensions accepted: ${answer}` };
    const a = acc[0];
    if (a.name.toLowerCase() !== "permessage-deflate") return { case: "invalid", error: `unknown extension accepted: ${answer}` };
    const o = offers.find((x) => x.name.toLowerCase() === "permessage-deflate");
    if (!o) return { case: "invalid", error: `permessage-deflate accepted but not offered (${offer})` };
    const offered = new Map(o.params.map((p) => [p.k, p.v]));
    const seen = new Set();
    const bits = (v) => /^(8|9|1[0-5])$/.test(v ?? "") ? Number(v) : null;
    for (const { k, v } of a.params) {
        if (seen.has(k)) return { case: "invalid", error: `parameter ${k} twice: ${answer}` };
        seen.add(k);
        switch (k) {
        case "server_no_context_takeover":
        case "client_no_context_takeover":
            if (v !== null) return { case: "invalid", error: `${k} takes no value: ${answer}` };
            break;
        case "server_max_window_bits": {
            const n = bits(v);
            if (n === null) return { case: "invalid", error: `${k}=${v} is not 8..15: ${answer}` };
            const ov = offered.get(k);
            if (ov !== undefined && ov !== null && n > Number(ov)) {
                return { case: "invalid", error: `${k}=${n} above the offer's ${ov}: ${answer}` };
            }
            break;
        }
        case "client_max_window_bits": {
            if (!offered.has(k)) return { case: "invalid", error: `${k} answered but not offered: ${answer}` };
            const n = bits(v);
            if (n === null) return { case: "invalid", error: `${k}=${v} is not 8..15: ${answer}` };
            const ov = offered.get(k);
            if (ov !== null && n > Number(ov)) return { case: "invalid", error: `${k}=${n} above the offer's ${ov}` };
            break;
        }
        default:
            return { case: "invalid", error: `unknown parameter ${k}: ${answer}` };
        }
    }
    return { case: `accepted (${a.params.map((p) => (p.v === null ? p.k : `${p.k}=${p.v}`)).join("; ") || "no parameters"})` };
}
