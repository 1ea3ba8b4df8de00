#include "tests/support/mclient.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

void mclient_on_text(mclient *c, const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    assert_non_null(j);
    const char *ch = json_string_value(json_object_get(j, "channel"));
    if (ch && strncmp(ch, "*.", 2) == 0) {
        json_t *m = json_object_get(json_object_get(json_object_get(j, "data"), "data"),
                                    "marker");
        if (json_is_string(m))
            snprintf(c->marker, sizeof c->marker, "%s", json_string_value(m));
    } else if (ch && strcmp(ch, c->chan) == 0) {
        int64_t seq = json_integer_value(json_object_get(j, "seq"));
        if (c->count > 0 && seq <= c->last_seq)
            c->out_of_order++;
        c->last_seq = seq;
        c->count++;
    } else if (ch) {
        c->unexpected++;
    }
    json_decref(j);
}

void mclient_pump(mclient *c, int timeout_ms)
{
    for (;;) {
        char *msg = NULL;
        int rc = wsc_recv_text(c->ws, timeout_ms, &msg, NULL);
        if (rc != 1) {
            assert_int_equal(rc, 0);
            return;
        }
        mclient_on_text(c, msg);
        free(msg);
        timeout_ms = 0;
    }
}

void mclient_request(mclient *c, const char *type, const char *ack)
{
    char req[256];
    snprintf(req, sizeof req, "{\"type\":\"%s\",\"data\":{\"channels\":[\"%s\"]}}", type,
             c->chan);
    assert_int_equal(wsc_send_text(c->ws, req), 0);
    uint64_t end = clock_mono_ms() + 5000;
    for (;;) {
        char *msg = NULL;
        assert_true(clock_mono_ms() < end);
        if (wsc_recv_text(c->ws, 500, &msg, NULL) != 1)
            continue;
        int got = strstr(msg, ack) != NULL;
        if (!got)
            mclient_on_text(c, msg);
        free(msg);
        if (got)
            return;
    }
}

void mclient_open(mclient *c, int port, const char *chan)
{
    memset(c, 0, sizeof *c);
    snprintf(c->chan, sizeof c->chan, "%s", chan);
    int status = 0;
    c->ws = wsc_connect("127.0.0.1", port, NULL, &status);
    assert_non_null(c->ws);
    assert_int_equal(status, 101);
    mclient_request(c, "subscribe", "\"subscription_ack\"");
}
