/*  hal_clock.h — the kernel's clocks: monotonic milliseconds for deadlines,
    wall-clock seconds for envelope timestamps. */

#ifndef HAL_CLOCK_H_INCLUDED
#define HAL_CLOCK_H_INCLUDED

#include <stdint.h>

/*  Monotonic milliseconds since an arbitrary start (CLOCK_MONOTONIC). */
int64_t hal_clock_mono_ms (void);

/*  Monotonic microseconds (for benchmarks and latency figures). */
int64_t hal_clock_mono_us (void);

/*  Wall-clock milliseconds since the Unix epoch. */
int64_t hal_clock_wall_ms (void);

/*  Wall-clock seconds since the Unix epoch, with sub-second precision. */
double hal_clock_wall_s (void);

#endif
