/*  cli_json.h — JSON text <-> msgpack for the aaax CLI, through jansson.
    JSON object -> map, array -> array, string -> str, integer -> int,
    real -> float64, true/false/null; the way back spells what JSON has no
    word for as {"$bin": ...}, {"$ext": ...}, {"$float": ...}. See docs/CLI.md.
 */

#ifndef CLI_JSON_H_INCLUDED
#define CLI_JSON_H_INCLUDED

#include <stddef.h>
#include <msgpack.h>

#include "aaax.h"
#include "chan_mpk.h"

/*  Deepest nesting of arrays and objects / maps accepted either way: the
    outermost container is level 1. */
#define CLI_JSON_MAX_DEPTH AAAX_MAX_DEPTH

/*  Flags of cli_msgpack_to_json. */
enum {
    CLI_JSON_COMPACT = 0, /* one line, no spaces: for JSON lines */
    CLI_JSON_PRETTY = 1   /* indented by 2, for people */
};

/*  Parses text (exactly one JSON value of any type, len bytes, NUL bytes
    allowed inside strings as \u0000) and appends its msgpack encoding to
    out. Returns 0; AAAX_EINVAL when the text is not JSON, repeats a key in
    an object or nests deeper than CLI_JSON_MAX_DEPTH; AAAX_ENOMEM. On
    error err (errlen bytes, may be NULL) says why and out is unchanged. */
int cli_json_to_msgpackn (const char *text, size_t len, chan_buf_t *out,
                          char *err, size_t errlen);

/*  The same for a NUL-terminated text. */
int cli_json_to_msgpack (const char *text, chan_buf_t *out, char *err,
                         size_t errlen);

/*  Renders a msgpack object as JSON text (NUL-terminated, no trailing
    newline; caller frees with free ()). Reals come out with the fewest
    digits that read back to the same double (one precision for the whole
    text). NULL when o nests deeper than CLI_JSON_MAX_DEPTH, when its
    non-string map keys would make more than 1 MiB of JSON text (keys in
    keys are escaped again at every level), or when memory ran out; err
    (may be NULL) says which. */
char *cli_msgpack_to_json (const msgpack_object *o, int flags, char *err,
                           size_t errlen);

#endif
