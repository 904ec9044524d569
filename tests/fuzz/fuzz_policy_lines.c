/*  fuzz_policy_lines.c — libFuzzer target for the rule-line scanner
    (policy/policy_lines.c), which reads policy and configuration files
    byte by byte. Any input, in both modes: the scan must stay inside the
    input, and when it finds a list, the lines must be in order and within
    the text's lines. An input starting with "RUN\n" is also loaded as a
    policy file (policy_load_text), which joins the scan to Lua's list. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "policy.h"
#include "policy_lines.h"
#include "policy_lua.h"

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
s_scan (const char *text, size_t len, policy_lines_mode_t mode, size_t most)
{
    int *lines = NULL;
    size_t n = 12345;
    int rc = policy_lines (text, len, mode, &lines, &n);
    if (rc != 0) {
        if ((rc != AAAX_ENOENT && rc != AAAX_ENOMEM) || lines || n != 12345)
            abort ();
        return;
    }
    if ((n == 0) != (lines == NULL) || n > len)
        abort ();
    for (size_t i = 0; i < n; i++) {
        if (lines[i] < 1 || (size_t) lines[i] > most)
            abort ();
        if (i > 0 && lines[i] < lines[i - 1])
            abort ();
    }
    //  The same text scans the same way.
    int *again = NULL;
    size_t n2 = 0;
    if (policy_lines (text, len, mode, &again, &n2) != 0 || n2 != n
        || (n && memcmp (again, lines, n * sizeof (int)) != 0))
        abort ();
    free (again);
    free (lines);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    //  An exact-size copy, so that reading past the end is caught.
    char *text = (char *) malloc (size ? size : 1);
    if (!text)
        return 0;
    memcpy (text, data, size);
    size_t most = s_count_lines (text, size);
    s_scan (text, size, POLICY_LINES_FILE, most);
    s_scan (text, size, POLICY_LINES_CONFIG, most);
    if (size >= 4 && memcmp (text, "RUN\n", 4) == 0 && size <= 8192) {
        policy_t *policy = NULL;
        char err[256];
        int rc = policy_load_text (text + 4, size - 4, "fuzz.lua", &policy, err,
                                   sizeof (err));
        if (rc == 0) {
            if (!policy)
                abort ();
            for (size_t i = 0; i < policy_size (policy); i++) {
                policy_rule_spec_t spec;
                if (policy_rule_spec (policy, (int) i, &spec) || !spec.source
                    || strncmp (spec.source, "fuzz.lua", 8) != 0)
                    abort ();
            }
            policy_t *copy = policy_clone (policy);
            if (copy
                && strcmp (policy_digest (copy), policy_digest (policy)) != 0)
                abort ();
            policy_destroy (&copy);
            policy_destroy (&policy);
        } else if (policy)
            abort ();
        if (strlen (err) >= sizeof (err))
            abort ();
    }
    free (text);
    return 0;
}
