/*  aaax_bench_main.c — the aaax_bench executable. Everything is in
    aaax_bench.c, built once into a library that aaax_vs links too. */

#include "bench_aaax.h"

int
main (int argc, char **argv)
{
    return aaax_bench_main (argc, argv);
}
