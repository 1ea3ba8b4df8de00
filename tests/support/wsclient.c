#include "tests/support/wsclient.h"
#include "common/wsframe.h"
#include "tools/lib/lg_ws.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline)
{
    int64_t l = deadline - now_ms();
    return l < 0 ? 0 : (int)l;
}

static int wait_fd(int fd, short ev, int64_t deadline)
{
    for (;;) {
        struct pollfd p = { fd, ev, 0 };
        int r = poll(&p, 1, left_ms(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        return r;   /* 1 ready, 0 timeout, -1 error */
    }
}

static int write_all(int fd, const void *p, size_t n, int64_t deadline)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (wait_fd(fd, POLLOUT, deadline) <= 0)
                    return -1;
                continue;
            }
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read more bytes into c->in; 1 read, 0 timeout, -1 EOF/error. */
static int fill(wsc *c, int64_t deadline)
{
    if (c->in_cap - c->in_len < 65536) {
        size_t nc = c->in_cap ? c->in_cap * 2 : 131072;
        while (nc - c->in_len < 65536)
            nc *= 2;
        uint8_t *n = realloc(c->in, nc);
        if (!n)
            return -1;
        c->in = n;
        c->in_cap = nc;
    }
    for (;;) {
        ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1, 0);
        if (r > 0) {
            c->in_len += (size_t)r;
            return 1;
        }
        if (r == 0)
            return -1;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        int w = wait_fd(c->fd, POLLIN, deadline);
        if (w <= 0)
            return w;
    }
}

static void consume(wsc *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

static int tcp_connect(const char *host, int port, const wsc_opts *o,
                       int64_t deadline)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (o->rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof(o->rcvbuf));
    if (o->src_addr) {
        struct sockaddr_in la;
        memset(&la, 0, sizeof(la));
        la.sin_family = AF_INET;
        if (inet_pton(AF_INET, o->src_addr, &la.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&la, sizeof(la)) != 0) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, deadline) <= 0) {
            close(fd);
            return -1;
        }
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            close(fd);
            return -1;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

wsc *wsc_connect_raw(const char *host, int port, const wsc_opts *opts)
{
    wsc_opts o = { 0 };
    if (opts)
        o = *opts;
    if (!o.path)
        o.path = "/ws";
    if (o.timeout_ms <= 0)
        o.timeout_ms = 5000;
    int64_t deadline = now_ms() + o.timeout_ms;
    int fd = tcp_connect(host, port, &o, deadline);
    if (fd < 0)
        return NULL;
    wsc *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->status = -1;
    c->close_code = -1;
    /* the handshake text and its check come from tools/lib/lg_ws.h */
    unsigned char raw[16];
    char key[LG_WS_KEY_LEN + 1];
    RAND_bytes(raw, sizeof(raw));
    wskey_from_nonce(raw, key);
    char req[4096];
    int n = lg_ws_request(req, sizeof(req), host, port, o.path, key);
    if (n < 0)
        goto fail;
    if (o.extra_headers) {   /* insert before the blank line */
        size_t el = strlen(o.extra_headers);
        if ((size_t)n + el >= sizeof(req))
            goto fail;
        memcpy(req + n - 2, o.extra_headers, el);
        memcpy(req + n - 2 + el, "\r\n", 2);
        n += (int)el;
    }
    if (write_all(fd, req, (size_t)n, deadline) != 0)
        goto fail;
    lg_http_resp resp;
    int hl = 0;
    do {
        if (fill(c, deadline) <= 0)
            goto fail;
        hl = lg_http_response_parse((char *)c->in, c->in_len, 16384, &resp);
    } while (hl == 0);
    if (hl < 0)
        goto fail;
    c->status = resp.status;
    if (resp.status == 101) {
        if (lg_ws_check(&resp, key, strlen(key)) != LG_WS_OK) {
            c->status = -1;
            goto fail;
        }
        consume(c, (size_t)hl);
    } else {
        /* read the body until EOF (the server closes) */
        consume(c, (size_t)hl);
        while (fill(c, deadline) > 0)
            ;
        c->body = strndup((char *)c->in, c->in_len);
    }
    return c;
fail:
    return c->status > 0 ? c : (wsc_free(c), NULL);
}

wsc *wsc_connect(const char *host, int port, const wsc_opts *opts,
                 int *status)
{
    wsc *c = wsc_connect_raw(host, port, opts);
    if (status)
        *status = c ? c->status : -1;
    if (c && c->status != 101) {
        wsc_free(c);
        return NULL;
    }
    return c;
}

int wsc_send_frame(wsc *c, int opcode, int fin, const void *p, size_t n)
{
    uint8_t mask[4];
    RAND_bytes(mask, 4);
    uint8_t *buf = malloc(WSFRAME_MAX_HEADER + n + 1);
    if (!buf)
        return -1;
    size_t h = wsframe_client_header(buf, opcode, fin, n, mask);
    if (n)
        memcpy(buf + h, p, n);
    wsframe_mask(buf + h, n, mask, 0);
    int r = write_all(c->fd, buf, h + n, now_ms() + 5000);
    free(buf);
    return r;
}

int wsc_send_text(wsc *c, const char *s)
{
    return wsc_send_frame(c, 1, 1, s, strlen(s));
}

int wsc_send_raw(wsc *c, const void *p, size_t n)
{
    return write_all(c->fd, p, n, now_ms() + 5000);
}

int wsc_send_close(wsc *c, uint16_t code)
{
    uint8_t p[2] = { (uint8_t)(code >> 8), (uint8_t)code };
    return wsc_send_frame(c, 8, 1, p, 2);
}

/* Parse one frame from c->in if complete: 1, or 0 if more bytes needed. */
static int parse_frame(wsc *c, wsc_frame *f)
{
    wsframe h;
    if (!wsframe_parse(c->in, c->in_len, &h) || c->in_len < h.header_len + h.len)
        return 0;
    f->opcode = h.opcode;
    f->fin = h.fin;
    f->len = (size_t)h.len;
    f->data = malloc(f->len + 1);
    if (!f->data)
        return 0;
    if (f->len)
        memcpy(f->data, c->in + h.header_len, f->len);
    if (h.masked)
        wsframe_mask(f->data, f->len, h.mask, 0);
    f->data[f->len] = 0;
    consume(c, h.header_len + f->len);
    return 1;
}

int wsc_recv(wsc *c, int timeout_ms, wsc_frame *f)
{
    int64_t deadline = now_ms() + timeout_ms;
    memset(f, 0, sizeof(*f));
    for (;;) {
        if (parse_frame(c, f))
            return 1;
        int r = fill(c, deadline);
        if (r <= 0)
            return r;
    }
}

void wsc_frame_free(wsc_frame *f)
{
    free(f->data);
    f->data = NULL;
}

static void note_close(wsc *c, const wsc_frame *f)
{
    c->close_code = f->len >= 2 ? (f->data[0] << 8) | f->data[1] : 1005;
}

int wsc_recv_text(wsc *c, int timeout_ms, char **out, size_t *len)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        wsc_frame f;
        int r = wsc_recv(c, left_ms(deadline), &f);
        if (r <= 0)
            return r;
        if (f.opcode == 1) {
            *out = (char *)f.data;
            if (len)
                *len = f.len;
            return 1;
        }
        if (f.opcode == 8) {
            note_close(c, &f);
            wsc_frame_free(&f);
            return -2;
        }
        if (f.opcode == 9)
            wsc_send_frame(c, 10, 1, f.data, f.len);
        wsc_frame_free(&f);
    }
}

int wsc_wait_close(wsc *c, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        wsc_frame f;
        int r = wsc_recv(c, left_ms(deadline), &f);
        if (r == 0)
            return -2;
        if (r < 0)
            return -1;
        if (f.opcode == 8) {
            note_close(c, &f);
            wsc_frame_free(&f);
            return c->close_code;
        }
        wsc_frame_free(&f);
    }
}

int wsc_wait_eof(wsc *c, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        c->in_len = 0;
        int r = fill(c, deadline);
        if (r < 0)
            return 1;
        if (r == 0)
            return 0;
    }
}

void wsc_free(wsc *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->body);
    free(c);
}
