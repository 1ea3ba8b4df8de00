/* odin-router: wires settings, logging and the router together. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "common/log.h"
#include "router/metrics.h"
#include "router/config.h"
#include "router/router.h"

int main(int argc, char **argv)
{
    /* hidden: the metric list as TSV, for tools/metrics-table.py */
    if (argc == 2 && strcmp(argv[1], "--metrics-list") == 0) {
        buf b = { 0 };
        int rc = router_metrics_list(&b) != 0 || fwrite(b.data, 1, b.len, stdout) != b.len;
        buf_free(&b);
        return rc;
    }
    router_config cfg;
    int rc = router_config_load(&cfg, argc, argv);
    if (rc != 0) {
        router_config_free(&cfg);
        return rc > 0 ? 0 : 2;
    }
    log_init("router", (enum log_level)cfg.log_min);
    /* hiredis writes with write(2): a dead Redis must not kill us. */
    signal(SIGPIPE, SIG_IGN);

    router *r = router_new(&cfg);
    if (!r) {
        log_kv(LOG_ERROR, "router failed to start", NULL);
        router_config_free(&cfg);
        return 1;
    }
    int code = router_run(r);
    router_free(r);
    router_config_free(&cfg);
    return code;
}
