/*  fuzz_manifest.c — libFuzzer target for app manifests
    (actors/app_manifest.c). Any input goes to the line finder
    (app_manifest_line) with a few questions: lines must lie within the
    text and the same text must answer the same way. Inputs up to 16 KiB
    are also parsed as a manifest (app_manifest_parse, which runs Lua in
    the restricted state): a failure must leave the manifest zeroed; a
    success must satisfy every rule, order with its own dependencies
    loaded, and fail to order without them. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "app_manifest.h"
#include "broker_config.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/*  Lines in the text as Lua counts them: "\n", "\r", "\r\n", "\n\r". */
static size_t
s_count_lines (const char *text, size_t len)
{
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n' || text[i] == '\r') {
            if (i + 1 < len && (text[i + 1] == '\n' || text[i + 1] == '\r')
                && text[i + 1] != text[i])
                i++;
            lines++;
        }
    return lines;
}

static void
s_lines (const char *text, size_t len, size_t most)
{
    static const struct {
        const char *key, *sub;
        size_t index;
    } asks[] = {
        { NULL, "name", 0 },        { NULL, "version", 0 },
        { NULL, "limits", 0 },      { NULL, NULL, 1 },
        { "permissions", NULL, 1 }, { "permissions", NULL, 3 },
        { "depends", NULL, 2 },     { "limits", "memory_kb", 0 },
        { "limits", NULL, 1 },      { "name", NULL, 1 },
        { "channels", "x", 0 },
    };
    for (size_t i = 0; i < sizeof (asks) / sizeof (asks[0]); i++) {
        size_t npos = 12345;
        int line = app_manifest_line (text, len, asks[i].key, asks[i].sub,
                                      asks[i].index, &npos);
        if (line < 0 || (size_t) line > most || npos > len)
            abort ();
        if (asks[i].index && line && npos < asks[i].index)
            abort ();
        size_t again_npos = 0;
        if (app_manifest_line (text, len, asks[i].key, asks[i].sub,
                               asks[i].index, &again_npos)
                != line
            || again_npos != npos)
            abort ();
    }
}

static void
s_check_list (char **list, size_t n)
{
    if (n > APP_MANIFEST_MAX_LIST || (n == 0) != (list == NULL))
        abort ();
    for (size_t i = 0; i < n; i++)
        if (!list[i])
            abort ();
}

static void
s_parse (const char *text, size_t len)
{
    app_manifest_t m, zero;
    memset (&zero, 0, sizeof zero);
    char err[256];
    int rc = app_manifest_parse (text, len, "fuzz.lua", &m, err, sizeof err);
    if (strnlen (err, sizeof err) >= sizeof err)
        abort ();
    if (rc) {
        if ((rc != AAAX_EINVAL && rc != AAAX_ELIMIT && rc != AAAX_ENOMEM)
            || memcmp (&m, &zero, sizeof m) != 0
            || strncmp (err, "fuzz.lua", 8) != 0)
            abort ();
        app_manifest_fini (&m);
        return;
    }
    //  Every rule holds.
    size_t nlen = strlen (m.name), vlen = strlen (m.version);
    if (!broker_config_valid_name (m.name, nlen)
        || strncmp (m.name, "kernel", 6) == 0 || vlen < 1 || vlen > 63)
        abort ();
    for (size_t i = 0; i < vlen; i++)
        if (m.version[i] <= 0x20 || m.version[i] >= 0x7f)
            abort ();
    s_check_list (m.permissions, m.npermissions);
    s_check_list (m.channels, m.nchannels);
    s_check_list (m.depends, m.ndepends);
    for (size_t i = 0; i < m.npermissions; i++) {
        const char *p = m.permissions[i];
        const char *colon = strchr (p, ':');
        if (!colon || colon == p || !colon[1] || strlen (p) > 512)
            abort ();
    }
    for (size_t i = 0; i < m.nchannels; i++)
        if (!broker_config_valid_name (m.channels[i], strlen (m.channels[i])))
            abort ();
    for (size_t i = 0; i < m.ndepends; i++) {
        if (!broker_config_valid_name (m.depends[i], strlen (m.depends[i]))
            || strcmp (m.depends[i], m.name) == 0)
            abort ();
        for (size_t j = 0; j < i; j++)
            if (strcmp (m.depends[i], m.depends[j]) == 0)
                abort ();
    }
    const app_limits_t *l = &m.limits;
    if ((l->memory_kb && (l->memory_kb < 64 || l->memory_kb > 1048576))
        || (l->instructions
            && (l->instructions < 1000 || l->instructions > 10000000000ull))
        || l->files_kb > 16777216 || l->kv_kb > 16777216)
        abort ();
    if (m.dir[0] || m.digest[0])
        abort ();

    //  Ordered alone: fine with its dependencies loaded, else an error.
    app_manifest_t *ms[1] = { &m };
    size_t order[1] = { 7 };
    rc = app_manifest_order (ms, 1, (const char *const *) m.depends, m.ndepends,
                             order, err, sizeof err);
    if (rc != 0 || order[0] != 0)
        abort ();
    order[0] = 7;
    rc = app_manifest_order (ms, 1, NULL, 0, order, err, sizeof err);
    if (m.ndepends ? (rc != AAAX_EINVAL || order[0] != 7
                      || !strstr (err, "which is not loaded"))
                   : (rc != 0 || order[0] != 0))
        abort ();
    app_manifest_fini (&m);
    if (memcmp (&m, &zero, sizeof m) != 0)
        abort ();
    app_manifest_fini (&m);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size > APP_MANIFEST_MAX_SIZE + 16)
        return 0;
    //  An exact-size copy, so that reading past the end is caught.
    char *text = (char *) malloc (size ? size : 1);
    if (!text)
        return 0;
    memcpy (text, data, size);
    s_lines (text, size, s_count_lines (text, size));
    if (size <= 16384)
        s_parse (text, size);
    free (text);
    return 0;
}
