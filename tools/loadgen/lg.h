/*
 * odin-loadgen internals shared by the parent (main.c) and the worker
 * processes (worker.c).  The parent parses settings into an lg_cfg, forks
 * one worker per plan entry, and each worker reports to the parent over
 * its own pipe (tools/lib/lg_report.h frames).
 */
#ifndef ODIN_TOOLS_LOADGEN_LG_H
#define ODIN_TOOLS_LOADGEN_LG_H

#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "tools/lib/lg_plan.h"

typedef struct lg_target {
    char host[256];
    int port;
    struct sockaddr_storage sa;
    socklen_t salen;
} lg_target;

typedef struct lg_cfg {
    lg_target *targets;
    size_t ntargets;
    struct in_addr addrs[LG_PLAN_MAX_ADDRS];
    size_t naddrs;
    const char *path;
    lg_chanset *cs;
    enum lg_mode mode;
    size_t k;                   /* random mode channel count */
    long heartbeat_ms;          /* 0 = off */
    long connect_timeout_ms;    /* connect + upgrade, and again for the ack */
    long close_grace_ms;        /* wait for close handshakes at the end */
    long max_message;           /* wslay max_recv_msg_length */
    uint64_t seed;
    int deflate;                /* LG_DEFLATE: offer permessage-deflate */
    uint64_t t0_us;             /* clock_mono_us() of the run start (parent) */
} lg_cfg;

/*
 * Run one worker until it is told to stop (SIGTERM/SIGINT) or its
 * connections are all gone and it was asked to stop; sends progress reports
 * every second and a final report to report_fd.  Returns the process exit
 * status (0 ok, 2 setup error).
 */
int lgw_run(const lg_cfg *cfg, int wid, const lg_plan_worker *pw, int report_fd);

#endif
