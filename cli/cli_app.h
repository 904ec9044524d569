/*  cli_app.h — `aaax app load|unload|reload|list|pin|unpin`: requests to the
    module loader (the work-queue kernel.loader, privileged; docs/LUA.md),
    and the small pure helpers that turn its answers into text. `aaax app
    run` is cli_app_run (cli/cli_apprun.c). */

#ifndef CLI_APP_H_INCLUDED
#define CLI_APP_H_INCLUDED

#include <stddef.h>
#include <stdio.h>
#include <msgpack.h>

/*  Exit codes of `aaax app …`. */
enum {
    CLI_APP_OK = 0,
    CLI_APP_REFUSED = 1, /* the loader answered ok: false */
    CLI_APP_USAGE = 2,   /* bad subcommand, option or argument */
    CLI_APP_FAILED = 3   /* no answer: the connection, an ERROR from the
                            kernel, --timeout, interrupted, output failed */
};

/*  `aaax app …`: argv[0] is "app", argv[1] the subcommand. Parses, asks
    the loader, prints; returns the exit code. "run" goes to cli_app_run
    with argv + 1. */
int cli_app_main (int argc, char **argv);

/*  `aaax app run DIR …` (cli/cli_apprun.c): argv[0] is "run", the words
    after it follow (DIR, options, --help). Returns the exit code. */
int cli_app_run (int argc, char **argv);

/*  `aaax help app [SUB]`: the group's usage (sub NULL) or that
    subcommand's help, on stdout. Exit code (2 for an unknown sub, said on
    stderr). */
int cli_app_help (const char *sub);

/*  One line per app subcommand ("  app load       load apps …\n"), as
    `aaax --help` lists its subcommands. */
void cli_app_summaries (FILE *out);

/*  ---- pure helpers ------------------------------------------------- */

/*  path made absolute against cwd (an absolute path is kept): "." items and
    repeated or trailing slashes dropped, ".." kept (the kernel's file
    system resolves it as ours would from cwd; symbolic links are not
    followed here). 0, or -1 when it does not fit in size or path is
    empty. */
int cli_app_abspath (const char *cwd, const char *path, char *out, size_t size);

/*  The first 12 hex digits of a digest as the loader gives it (a hex
    string, optionally "ALGO:hex", or a bin); "-" when absent or of
    another type. out holds at least 13 bytes. */
void cli_app_digest12 (const msgpack_object *digest, char *out, size_t size);

/*  One line per MODULE of the array modules:
      "VERB NAME VERSION (digest 0123456789ab) granted: a, b; refused: c\n"
    ("none" for an empty or absent list). Returns a malloc'd
    NUL-terminated text (empty when there are none), NULL when memory ran
    out. Control characters of the kernel's strings are shown as '?'. */
char *cli_app_loaded_lines (const msgpack_object *modules, const char *verb);

/*  The aligned table of `aaax app list`: a header
      NAME VERSION STATE RESTARTS MEMORY(KiB) HANDLED PINNED PATH
    then one row per MODULE sorted by name, each failed app's last error
    on the line under its row ("  error: …"). MEMORY is the Lua state's
    bytes in KiB, rounded up; PINNED yes or no. malloc'd text, NULL when
    memory ran out or modules is not an array. */
char *cli_app_table (const msgpack_object *modules);

#endif
