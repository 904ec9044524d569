/*  testutil.h — minimal checks for the unit tests: count failures, report
    file:line, exit non-zero at the end when anything failed. */
#ifndef TESTUTIL_H_INCLUDED
#define TESTUTIL_H_INCLUDED

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int tu_failures = 0;
static int tu_checks = 0;

#define CHECK(cond)                                                           \
    do {                                                                      \
        tu_checks++;                                                          \
        if (!(cond)) {                                                        \
            tu_failures++;                                                    \
            fprintf (stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                     #cond);                                                  \
        }                                                                     \
    } while (0)

#define CHECK_EQ_INT(a, b)                                             \
    do {                                                               \
        long long tu_a = (long long) (a), tu_b = (long long) (b);      \
        tu_checks++;                                                   \
        if (tu_a != tu_b) {                                            \
            tu_failures++;                                             \
            fprintf (stderr, "%s:%d: %s == %s failed: %lld != %lld\n", \
                     __FILE__, __LINE__, #a, #b, tu_a, tu_b);          \
        }                                                              \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                 \
    do {                                                                   \
        const char *tu_a = (a), *tu_b = (b);                               \
        tu_checks++;                                                       \
        if (!tu_a || !tu_b || strcmp (tu_a, tu_b) != 0) {                  \
            tu_failures++;                                                 \
            fprintf (stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", \
                     __FILE__, __LINE__, #a, #b, tu_a ? tu_a : "(null)",   \
                     tu_b ? tu_b : "(null)");                              \
        }                                                                  \
    } while (0)

/*  Removes a directory holding only files (a store, a data dir). */
static inline void
tu_rmrf (const char *dir)
{
    DIR *d = opendir (dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir (d))) {
        if (!strcmp (e->d_name, ".") || !strcmp (e->d_name, ".."))
            continue;
        char path[1024];
        snprintf (path, sizeof path, "%s/%s", dir, e->d_name);
        unlink (path);
    }
    closedir (d);
    rmdir (dir);
}

#define TEST_DONE()                                                \
    do {                                                           \
        printf ("%d checks, %d failed\n", tu_checks, tu_failures); \
        return tu_failures ? 1 : 0;                                \
    } while (0)

#endif
