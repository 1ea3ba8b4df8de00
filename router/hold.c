#include "router/hold.h"

#include <stdlib.h>

#include "common/log.h"

struct router_hold {
    uint64_t max_ms;
    router_metrics *m;
    uint64_t since;          /* mono ms the hold began; 0 = not holding */
    int expired;             /* ROUTER_HOLD_MAX_MS passed: fallback */
    int had_view;            /* routes were trusted at least once */
};

router_hold *router_hold_new(uint64_t hold_max_ms, router_metrics *m)
{
    router_hold *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->max_ms = hold_max_ms;
    h->m = m;
    return h;
}

void router_hold_free(router_hold *h)
{
    free(h);
}

static void end_hold(router_hold *h, uint64_t now_ms)
{
    if (!h->since)
        return;
    uint64_t held = now_ms - h->since;
    h->m->hold_ms += held;
    log_kv(LOG_INFO, "routes known again; consumption resumes", "I:held_ms",
           (int64_t)held, "b:expired", h->expired, NULL);
    h->since = 0;
    h->expired = 0;
}

int router_hold_decide(router_hold *h, const router_hold_view *v, uint64_t now_ms)
{
    if (v->trusted) {
        end_hold(h, now_ms);
        h->had_view = 1;
        return ROUTER_MODE_TARGETED;
    }
    if (h->had_view && !v->cmd_connected) {
        end_hold(h, now_ms);
        return ROUTER_MODE_FALLBACK;
    }
    if (!h->since) {
        h->since = now_ms ? now_ms : 1;
        h->m->holds++;
        log_kv(LOG_WARN, "holding consumption: which shards hold the tokens cannot be "
               "known yet (nothing is committed meanwhile)", "b:redis_connected",
               v->cmd_connected, "i:hold_max_ms", (int)h->max_ms, NULL);
    }
    if (now_ms - h->since >= h->max_ms) {
        if (!h->expired) {
            h->expired = 1;
            h->m->hold_expired++;
            log_kv(LOG_WARN, "ROUTER_HOLD_MAX_MS reached: broadcasting to every live shard "
                   "until routes are known", "u:live_shards", (uint64_t)v->live_shards, NULL);
        }
        return ROUTER_MODE_FALLBACK;
    }
    return ROUTER_HOLD;
}

int router_hold_active(const router_hold *h)
{
    return h->since != 0;
}

int router_hold_expired(const router_hold *h)
{
    return h->expired;
}

uint64_t router_hold_elapsed_ms(const router_hold *h, uint64_t now_ms)
{
    return h->since ? now_ms - h->since : 0;
}
