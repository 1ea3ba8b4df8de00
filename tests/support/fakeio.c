/* Fake client connections without sockets (contract in fakeio.h). */
#include "tests/support/fakeio.h"
#include "common/wsframe.h"
#include "shard/settings.h"
#include "shard/subs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/eventfd.h>

fake_conn *fakeio_find(fakeio *f, int fd)
{
    for (int i = 0; i < f->n; i++)
        if (f->c[i]->fd == fd)
            return f->c[i];
    return NULL;
}

static void readable(fake_conn *c, int on)
{
    uint64_t v = 1;
    if (on) {
        ssize_t w = write(c->fd, &v, sizeof v);
        (void)w;
    } else {
        ssize_t r = read(c->fd, &v, sizeof v);   /* clears the counter */
        (void)r;
    }
}

static ssize_t f_read(void *ud, int fd, void *b, size_t len)
{
    fake_conn *c = fakeio_find(ud, fd);
    if (!c || c->closed) {
        errno = EBADF;
        return -1;
    }
    if (c->read_errno) {
        errno = c->read_errno;
        return -1;
    }
    size_t left = c->in.len - c->in_off;
    if (left == 0) {
        readable(c, 0);
        if (c->peer_closed)
            return 0;
        errno = EAGAIN;
        return -1;
    }
    size_t n = left < len ? left : len;
    memcpy(b, c->in.data + c->in_off, n);
    c->in_off += n;
    if (c->in_off == c->in.len && !c->peer_closed)
        readable(c, 0);
    return (ssize_t)n;
}

static ssize_t f_writev(void *ud, int fd, const struct iovec *iov, int n)
{
    fake_conn *c = fakeio_find(ud, fd);
    if (!c || c->closed) {
        errno = EBADF;
        return -1;
    }
    c->writes++;
    size_t done = 0;
    for (int i = 0; i < n; i++) {
        size_t take = iov[i].iov_len;
        if (take > c->write_room)
            take = c->write_room;
        if (buf_append(&c->out, iov[i].iov_base, take) != 0)
            break;
        c->write_room -= take;
        done += take;
        if (take < iov[i].iov_len)
            break;
    }
    if (done == 0 && n > 0) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)done;
}

static int f_shutdown_wr(void *ud, int fd)
{
    fake_conn *c = fakeio_find(ud, fd);
    if (c)
        c->shut_wr = 1;
    return c ? 0 : -1;
}

static int f_close(void *ud, int fd)
{
    fake_conn *c = fakeio_find(ud, fd);
    if (c)
        c->closed = 1;
    return c ? 0 : -1;
}

static int f_input_pending(void *ud, int fd)
{
    fake_conn *c = fakeio_find(ud, fd);
    return c && !c->closed && c->in.len > c->in_off;
}

void fakeio_init(fakeio *f, client_io *io)
{
    memset(f, 0, sizeof *f);
    *io = (client_io){ .read = f_read, .writev = f_writev,
                       .shutdown_wr = f_shutdown_wr, .close = f_close,
                       .input_pending = f_input_pending, .ud = f };
}

void fakeio_free(fakeio *f)
{
    for (int i = 0; i < f->n; i++) {
        close(f->c[i]->fd);
        buf_free(&f->c[i]->in);
        buf_free(&f->c[i]->out);
        free(f->c[i]);
    }
    f->n = 0;
}

fake_conn *fakeio_conn(fakeio *f, uint8_t last_octet, uint16_t port)
{
    if (f->n == FAKEIO_MAX)
        return NULL;
    fake_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->write_room = SIZE_MAX;
    c->sa.sin_family = AF_INET;
    c->sa.sin_port = htons(port);
    c->sa.sin_addr.s_addr = htonl(0x7f000000u | last_octet);
    f->c[f->n++] = c;
    return c;
}

void fake_send(fake_conn *c, const void *data, size_t len)
{
    buf_append(&c->in, data, len);
    readable(c, 1);
}

void fake_send_frame(fake_conn *c, int opcode, const void *payload, size_t len)
{
    static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
    uint8_t *b = malloc(WSFRAME_MAX_HEADER + len + 1);
    if (!b)
        return;
    size_t h = wsframe_client_header(b, opcode, 1, len, mask);
    if (len)
        memcpy(b + h, payload, len);
    wsframe_mask(b + h, len, mask, 0);
    fake_send(c, b, h + len);
    free(b);
}

void fake_send_text(fake_conn *c, const char *text)
{
    fake_send_frame(c, 1, text, strlen(text));
}

void fake_peer_close(fake_conn *c)
{
    c->peer_closed = 1;
    readable(c, 1);
}

void fake_send_upgrade(fake_conn *c)
{
    static const char req[] =
        "GET /ws HTTP/1.1\r\nHost: shard\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    fake_send(c, req, sizeof req - 1);
}

void fake_run(struct event_base *base)
{
    /* EVLOOP_ONCE: one pass each (a connection waiting to write is
     * always "writable" here, an eventfd, so passes are bounded instead) */
    for (int i = 0; i < 100; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

int fake_http_status(fake_conn *c)
{
    const char *end = c->out.len ? memmem(c->out.data, c->out.len, "\r\n\r\n", 4) : NULL;
    int st = -1;
    if (!end || sscanf(c->out.data, "HTTP/1.1 %d", &st) != 1)
        return -1;
    c->out_off = (size_t)(end - c->out.data) + 4;
    return st;
}

int fake_next_frame(fake_conn *c, int *opcode, char **payload, size_t *len)
{
    wsframe h;
    const uint8_t *b = (const uint8_t *)c->out.data + c->out_off;
    size_t n = c->out.len - c->out_off;
    if (!wsframe_parse(b, n, &h) || n < h.header_len + h.len)
        return 0;
    *opcode = h.opcode;
    *len = (size_t)h.len;
    *payload = malloc(h.len + 1);
    memcpy(*payload, b + h.header_len, h.len);
    (*payload)[h.len] = 0;
    c->out_off += h.header_len + h.len;
    return 1;
}

int fake_ctx_init(fake_ctx *fc, const char *const *flags)
{
    memset(fc, 0, sizeof *fc);
    char *argv[32] = { "odin-shard" };
    int argc = 1;
    for (; flags && flags[argc - 1] && argc < 31; argc++)
        argv[argc] = (char *)flags[argc - 1];
    argv[argc] = NULL;
    if (shard_settings_load(&fc->set, argc, argv) != 0)
        return -1;
    fc->ctx.set = &fc->set;
    fc->ctx.base = event_base_new();
    fc->ctx.subs = subs_new(NULL, NULL);
    fc->ctx.max_connections = fc->set.max_connections > 0 ? fc->set.max_connections : 1000;
    return fc->ctx.base && fc->ctx.subs ? 0 : -1;
}

void fake_ctx_free(fake_ctx *fc)
{
    subs_free(fc->ctx.subs);
    event_base_free(fc->ctx.base);
    shard_settings_free(&fc->set);
}
