/*  fuzz_json.c — libFuzzer target for the CLI's JSON <-> msgpack bridge
    (cli/cli_json.c). The input is read twice:
    (a) as JSON text: when cli_json_to_msgpackn accepts it, the msgpack must
        be exactly one value, render back to JSON, and that JSON must give
        the very same msgpack bytes again (any difference aborts);
    (b) as msgpack bytes: each value msgpack-c unpacks is rendered with
        cli_msgpack_to_json (compact and pretty), and whatever comes out
        must be JSON that jansson reads (but for NUL bytes in keys, which
        jansson refuses to read). */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <msgpack.h>

#include "aaax.h"
#include "chan_mpk.h"
#include "cli_json.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
s_fail (const char *what, const char *detail)
{
    fprintf (stderr, "fuzz_json: %s: %s\n", what, detail ? detail : "");
    abort ();
}

static void
s_json_side (const uint8_t *data, size_t size)
{
    char err[256];
    chan_buf_t mp;
    chan_buf_init (&mp);
    int rc =
        cli_json_to_msgpackn ((const char *) data, size, &mp, err, sizeof err);
    if (rc != 0) {
        if (mp.len != 0)
            s_fail ("output written on error", err);
        chan_buf_fini (&mp);
        return;
    }
    if (!chan_mpk_valid (mp.data, mp.len, 64))
        s_fail ("invalid msgpack from JSON", NULL);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    if (msgpack_unpack_next (&u, (const char *) mp.data, mp.len, &off)
            != MSGPACK_UNPACK_SUCCESS
        || off != mp.len)
        s_fail ("msgpack-c cannot read msgpack from JSON", NULL);
    char *text =
        cli_msgpack_to_json (&u.data, CLI_JSON_COMPACT, err, sizeof err);
    if (!text)
        s_fail ("cannot render what came from JSON", err);
    chan_buf_t again;
    chan_buf_init (&again);
    if (cli_json_to_msgpack (text, &again, err, sizeof err) != 0)
        s_fail ("rendered JSON does not parse", err);
    if (again.len != mp.len || memcmp (again.data, mp.data, mp.len) != 0)
        s_fail ("JSON -> msgpack -> JSON -> msgpack differs", text);
    free (text);
    chan_buf_fini (&again);
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&mp);
}

static void
s_check_json (const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads (text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    /*  A map key with a NUL byte comes out as "\u0000" in the key: valid
        JSON that jansson alone will not read back. */
    if (!j && json_error_code (&jerr) == json_error_null_byte_in_key)
        return;
    if (!j)
        s_fail ("rendered JSON does not parse", jerr.text);
    json_decref (j);
}

static void
s_msgpack_side (const uint8_t *data, size_t size)
{
    size_t off = 0;
    for (int n = 0; n < 8 && off < size; n++) {
        /*  msgpack-c allocates a container's elements before reading them:
            let through only values whose headers fit the bytes, as a
            peer's frame is checked before it is unpacked. */
        chan_mpk_reader_t r;
        chan_mpk_reader_init (&r, data + off, size - off);
        if (chan_mpk_skip (&r, 64) != 0)
            return;
        size_t len = size - off - chan_mpk_remaining (&r);
        msgpack_unpacked u;
        msgpack_unpacked_init (&u);
        size_t used = 0;
        int rc =
            msgpack_unpack_next (&u, (const char *) data + off, len, &used);
        if (rc == MSGPACK_UNPACK_SUCCESS) {
            char err[256];
            char *text = cli_msgpack_to_json (&u.data, CLI_JSON_COMPACT, err,
                                              sizeof err);
            if (text) {
                s_check_json (text);
                free (text);
            }
            text =
                cli_msgpack_to_json (&u.data, CLI_JSON_PRETTY, err, sizeof err);
            if (text) {
                s_check_json (text);
                free (text);
            }
        }
        msgpack_unpacked_destroy (&u);
        if (rc != MSGPACK_UNPACK_SUCCESS)
            return;
        off += len;
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_json_side (data, size);
    s_msgpack_side (data, size);
    return 0;
}
