/* Token bucket (contract in tbucket.h). */
#include "common/tbucket.h"

void tbucket_init(tbucket *b, double rate, double burst, uint64_t now)
{
    b->rate = rate;
    b->burst = burst;
    b->tokens = burst;
    b->ms = now;
}

int tbucket_take(tbucket *b, uint64_t now)
{
    if (b->rate <= 0)
        return 1;
    if (now > b->ms) {
        b->tokens += (double)(now - b->ms) * b->rate / 1000.0;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->ms = now;
    }
    if (b->tokens < 1.0)
        return 0;
    b->tokens -= 1.0;
    return 1;
}

int tbucket_full(const tbucket *b, uint64_t now)
{
    if (b->rate <= 0)
        return 1;
    double tk = b->tokens;
    if (now > b->ms)
        tk += (double)(now - b->ms) * b->rate / 1000.0;
    return tk >= b->burst;
}
