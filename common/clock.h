/* Time helpers: monotonic for intervals, wall clock for timestamps. */
#ifndef ODIN_COMMON_CLOCK_H
#define ODIN_COMMON_CLOCK_H

#include <stdint.h>

uint64_t clock_mono_ms(void);
uint64_t clock_mono_us(void);
uint64_t clock_mono_ns(void);
uint64_t clock_wall_ms(void);   /* Unix epoch milliseconds */
uint64_t clock_wall_us(void);   /* Unix epoch microseconds */

#endif
