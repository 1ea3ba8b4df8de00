/* odin-shard: settings and logging, then shard_run() (shard/shard.c). */
#include "shard/settings.h"
#include "shard/shard.h"
#include "common/config.h"
#include "common/log.h"
#include "shard/metrics.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    /* hidden: the metric list as TSV, for tools/metrics-table.py */
    if (argc == 2 && strcmp(argv[1], "--metrics-list") == 0) {
        buf b = { 0 };
        int rc = shard_metrics_list(&b) != 0 || fwrite(b.data, 1, b.len, stdout) != b.len;
        buf_free(&b);
        return rc;
    }
    shard_settings set;
    int rc = shard_settings_load(&set, argc, argv);
    if (rc != 0) {
        shard_settings_free(&set);
        return rc > 0 ? 0 : 2;
    }
    enum log_level lvl;
    if (log_level_parse(set.log_level, &lvl) != 0) {
        config_error("LOG_LEVEL \"%s\" is not debug|info|warn|error", set.log_level);
        shard_settings_free(&set);
        return 2;
    }
    log_init("shard", lvl);
    rc = shard_run(&set);
    shard_settings_free(&set);
    return rc;
}
