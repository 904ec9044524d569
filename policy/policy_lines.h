/*  policy_lines.h — finds the line on which each rule of a policy is written,
    so that messages and decisions can say "policy.lua:14" rather than
    "rule 3". A small Lua tokenizer (names, numbers, short and long strings,
    short and long comments) walks the source text without running it: for a
    policy file, the elements of the table constructor after the chunk's
    `return`; for a configuration file, the elements of the table constructor
    given to the `policy` key of the returned table. Rules built by code have
    no such constructor: then the scan reports that it cannot tell.

    The text comes from outside (any bytes): the scan is linear, bounded by
    the length, and never reads past it. */

#ifndef POLICY_LINES_H_INCLUDED
#define POLICY_LINES_H_INCLUDED

#include <stddef.h>

typedef enum {
    POLICY_LINES_FILE = 0,  /* a policy file: `return { rule, rule, ... }` */
    POLICY_LINES_CONFIG = 1 /* a config file: `return { policy = { ... } }` */
} policy_lines_mode_t;

/*  Scans src (len bytes, need not be NUL-terminated) and, when the rule
    list is a table constructor whose elements are all positional, sets
    *lines_p to a new array (caller frees; NULL when empty) holding the
    1-based line where each element starts and *n_p to their number, and
    returns 0. Returns AAAX_ENOENT when the list is not such a literal
    (built by code, keyed elements, a `policy` that is a path, no `return`
    at the chunk's top level), AAAX_ENOMEM on no memory; then *lines_p and
    *n_p are left untouched. A count that differs from the rules Lua saw
    means an element expanded to several values: callers check it. */
int policy_lines (const char *src, size_t len, policy_lines_mode_t mode,
                  int **lines_p, size_t *n_p);

#endif
