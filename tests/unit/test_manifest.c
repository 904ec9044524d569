/*  test_manifest.c — unit tests of Lua app manifests (actors/app_manifest.c):
    every validation rule with the line its message names, the line finder,
    loading from a directory, the digest and the dependency order. */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "aaax.h"
#include "app_manifest.h"
#include "testutil.h"

//  Helpers ---------------------------------------------------------------

static char s_err[1024];

/*  Parses src as "manifest.lua"; the message lands in s_err. */
static int
parse (const char *src, app_manifest_t *m)
{
    return app_manifest_parse (src, strlen (src), "manifest.lua", m, s_err,
                               sizeof s_err);
}

/*  Parses src, which must fail with rc and a message starting with want. */
#define EXPECT_ERR(src, rc, want) s_expect_err (__LINE__, src, rc, want)

static void
s_expect_err (int line, const char *src, int rc, const char *want)
{
    app_manifest_t m;
    memset (&m, 0x5a, sizeof m); /* failure must leave it zeroed */
    int got = parse (src, &m);
    tu_checks++;
    if (got != rc || strncmp (s_err, want, strlen (want)) != 0) {
        tu_failures++;
        fprintf (stderr,
                 "%s:%d: want rc %d \"%s...\"\n  got rc %d \"%s\"\n  for: %s\n",
                 __FILE__, line, rc, want, got, s_err, src);
    }
    app_manifest_t zero;
    memset (&zero, 0, sizeof zero);
    CHECK (memcmp (&m, &zero, sizeof m) == 0);
    app_manifest_fini (&m);
}

/*  Parses src, which must be valid. */
#define EXPECT_OK(src) s_expect_ok (__LINE__, src)

static void
s_expect_ok (int line, const char *src)
{
    app_manifest_t m;
    int got = parse (src, &m);
    tu_checks++;
    if (got != 0) {
        tu_failures++;
        fprintf (stderr, "%s:%d: want 0, got %d \"%s\"\n  for: %s\n", __FILE__,
                 line, got, s_err, src);
    }
    app_manifest_fini (&m);
}

/*  A manifest with one field replaced: "return { name = ..., version =
    ...,\n<extra>\n}" so that extra starts on line 3. */
static const char *
with (const char *extra)
{
    static char buf[70000];
    snprintf (buf, sizeof buf,
              "return { name = \"echo\",\n"
              "  version = \"1.0.0\",\n"
              "%s\n"
              "}\n",
              extra);
    return buf;
}

static int
s_rm (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove (path);
}

static void
rmrf (const char *dir)
{
    nftw (dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static void
write_file (const char *dir, const char *rel, const char *text)
{
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen (path, "wb");
    CHECK (f != NULL);
    if (!f)
        return;
    fwrite (text, 1, strlen (text), f);
    fclose (f);
}

static void
make_dir (const char *dir, const char *rel)
{
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/%s", dir, rel);
    CHECK (mkdir (path, 0700) == 0);
}

static const char *s_good = "-- manifest.lua\n"
                            "return { name = \"echo\", version = \"1.0.0\",\n"
                            "         permissions = { \"chan.write:news\", "
                            "\"fs.write:*\" },\n"
                            "         channels = { \"news\" }, depends = {},\n"
                            "         limits = { memory_kb = 4096, "
                            "instructions = 10000000,\n"
                            "                    files_kb = 16384, kv_kb = "
                            "16384 } }\n";

/*  A new app directory holding manifest.lua (manifest) and main.lua. */
static void
make_app (char *dir, const char *manifest)
{
    strcpy (dir, "/tmp/aaax-manifest-XXXXXX");
    if (!mkdtemp (dir)) {
        perror ("mkdtemp");
        exit (1);
    }
    if (manifest)
        write_file (dir, "manifest.lua", manifest);
    write_file (dir, "main.lua", "return { start = function () end }\n");
}

//  Parsing ---------------------------------------------------------------

static void
test_valid (void)
{
    app_manifest_t m;
    CHECK_EQ_INT (parse (s_good, &m), 0);
    CHECK_EQ_STR (m.name, "echo");
    CHECK_EQ_STR (m.version, "1.0.0");
    CHECK_EQ_INT (m.npermissions, 2);
    if (m.npermissions == 2) {
        CHECK_EQ_STR (m.permissions[0], "chan.write:news");
        CHECK_EQ_STR (m.permissions[1], "fs.write:*");
    }
    CHECK_EQ_INT (m.nchannels, 1);
    if (m.nchannels == 1)
        CHECK_EQ_STR (m.channels[0], "news");
    CHECK_EQ_INT (m.ndepends, 0);
    CHECK_EQ_INT (m.limits.memory_kb, 4096);
    CHECK_EQ_INT (m.limits.instructions, 10000000);
    CHECK_EQ_INT (m.limits.files_kb, 16384);
    CHECK_EQ_INT (m.limits.kv_kb, 16384);
    CHECK_EQ_STR (m.dir, "");
    CHECK_EQ_STR (m.digest, "");
    app_manifest_fini (&m);
    //  fini zeroes, and is safe twice and on NULL.
    CHECK (m.permissions == NULL && m.npermissions == 0);
    CHECK_EQ_STR (m.name, "");
    app_manifest_fini (&m);
    app_manifest_fini (NULL);

    //  The minimum: a name and a version; nothing else set.
    CHECK_EQ_INT (parse ("return { name = 'a', version = '1' }", &m), 0);
    CHECK (m.permissions == NULL && m.channels == NULL && m.depends == NULL);
    CHECK (m.limits.memory_kb == 0 && m.limits.instructions == 0
           && m.limits.files_kb == 0 && m.limits.kv_kb == 0);
    app_manifest_fini (&m);

    //  Built by code is fine: the manifest is data, however it is made.
    CHECK_EQ_INT (parse ("local t = { name = 'calc' }\n"
                         "t.version = string.format ('%d.%d', 2, 1)\n"
                         "t.depends = { 'a' .. 'b' }\n"
                         "return t\n",
                         &m),
                  0);
    CHECK_EQ_STR (m.version, "2.1");
    CHECK (m.ndepends == 1 && strcmp (m.depends[0], "ab") == 0);
    app_manifest_fini (&m);

    //  A zeroed manifest can be finied; so can a failed one.
    memset (&m, 0, sizeof m);
    app_manifest_fini (&m);
    CHECK (parse ("return 1", &m) != 0);
    app_manifest_fini (&m);
    app_manifest_fini (&m);

    //  Chunk names: NULL is "manifest.lua".
    CHECK_EQ_INT (
        app_manifest_parse ("return 1", 8, NULL, &m, s_err, sizeof s_err),
        AAAX_EINVAL);
    CHECK (strncmp (s_err, "manifest.lua: ", 14) == 0);
    CHECK_EQ_INT (
        app_manifest_parse ("return 1", 8, "x/y.lua", &m, s_err, sizeof s_err),
        AAAX_EINVAL);
    CHECK (strncmp (s_err, "x/y.lua: ", 9) == 0);
    //  A small err buffer is cut, never overrun.
    char small[8];
    CHECK_EQ_INT (
        app_manifest_parse ("return 1", 8, NULL, &m, small, sizeof small),
        AAAX_EINVAL);
    CHECK_EQ_INT (strlen (small), 7);
    CHECK_EQ_INT (app_manifest_parse ("return 1", 8, NULL, &m, NULL, 0),
                  AAAX_EINVAL);
    CHECK_EQ_INT (app_manifest_parse (NULL, 1, NULL, &m, NULL, 0), AAAX_EINVAL);
    CHECK_EQ_INT (app_manifest_parse ("", 0, NULL, NULL, NULL, 0), AAAX_EINVAL);
}

static void
test_shape (void)
{
    EXPECT_ERR ("return 5", AAAX_EINVAL,
                "manifest.lua: must return a table of fields");
    EXPECT_ERR ("local x = 1", AAAX_EINVAL,
                "manifest.lua: must return a table of fields, as in return "
                "{ name = \"app\", version = \"1.0.0\" } (got nil)");
    EXPECT_ERR ("return 'echo'", AAAX_EINVAL,
                "manifest.lua: must return a table of fields");
    //  Unknown keys (typos) name the key and its line; before "missing".
    EXPECT_ERR ("return {\n"
                "  name = 'echo',\n"
                "  vresion = '1.0',\n"
                "}",
                AAAX_EINVAL,
                "manifest.lua:3: vresion: unknown field (known: name, "
                "version, permissions, channels, depends, limits)");
    EXPECT_ERR ("return {\n  nmae = 'echo',\n  version = '1.0' }", AAAX_EINVAL,
                "manifest.lua:2: nmae: unknown field");
    EXPECT_ERR (with ("  ['chan nels'] = {}"), AAAX_EINVAL,
                "manifest.lua:3: chan nels: unknown field");
    //  Of several, the smallest: messages do not depend on hash order.
    EXPECT_ERR (with ("  zz = 1, aa = 2, mm = 3"), AAAX_EINVAL,
                "manifest.lua:3: aa: unknown field");
    //  Not named.
    EXPECT_ERR ("return { 'echo', name = 'x', version = '1' }", AAAX_EINVAL,
                "manifest.lua: fields must be named, as in name = ... "
                "(found a number key)");
    EXPECT_ERR ("return { [true] = 1, name = 'x', version = '1' }", AAAX_EINVAL,
                "manifest.lua: fields must be named");
    //  Size.
    char *big = (char *) malloc (APP_MANIFEST_MAX_SIZE + 2);
    memset (big, ' ', APP_MANIFEST_MAX_SIZE + 1);
    memcpy (big, "return {}", 9);
    app_manifest_t m;
    CHECK_EQ_INT (app_manifest_parse (big, APP_MANIFEST_MAX_SIZE + 1, NULL, &m,
                                      s_err, sizeof s_err),
                  AAAX_ELIMIT);
    CHECK (strstr (s_err, "larger than 65536 bytes") != NULL);
    //  Exactly 64 KiB is fine.
    memcpy (big, "return {name='x',version='1'}", 29);
    CHECK_EQ_INT (app_manifest_parse (big, APP_MANIFEST_MAX_SIZE, NULL, &m,
                                      s_err, sizeof s_err),
                  0);
    app_manifest_fini (&m);
    free (big);
}

static void
test_lua_errors (void)
{
    //  Syntax errors as Lua reports them, with the line.
    EXPECT_ERR ("return {\n  name = 'echo',\n  version = ,\n}", AAAX_EINVAL,
                "manifest.lua:3: unexpected symbol near ','");
    EXPECT_ERR ("return {\n  name = 'echo'\n  version = '1'\n}", AAAX_EINVAL,
                "manifest.lua:3: '}' expected (to close '{' at line 1) near "
                "'version'");
    //  Runtime errors.
    EXPECT_ERR ("local x = nil\nreturn { name = x.y }", AAAX_EINVAL,
                "manifest.lua:2: attempt to index a nil value");
    EXPECT_ERR ("\n\nerror ('boom')", AAAX_EINVAL, "manifest.lua:3: boom");
    //  No full Lua: io, os, require are not there.
    EXPECT_ERR ("return { name = os.getenv ('HOME') }", AAAX_EINVAL,
                "manifest.lua:1: attempt to index a nil value (global 'os')");
    EXPECT_ERR ("require 'x'", AAAX_EINVAL,
                "manifest.lua:1: attempt to call a nil value (global "
                "'require')");
    //  Caps.
    EXPECT_ERR ("while true do end", AAAX_ELIMIT,
                "manifest.lua:1: instruction limit reached");
    EXPECT_ERR ("local t = {} for i = 1, 1e9 do t[i] = i end", AAAX_ELIMIT,
                "manifest.lua");
    //  Binary chunks are refused.
    EXPECT_ERR ("\x1bLua", AAAX_EINVAL,
                "manifest.lua: binary chunks are not allowed");
}

static void
test_name (void)
{
    EXPECT_ERR ("return {\n  version = '1'\n}", AAAX_EINVAL,
                "manifest.lua: name: missing");
    EXPECT_ERR ("return {\n  version = '1',\n  name = 12 }", AAAX_EINVAL,
                "manifest.lua:3: name: must be a string (got number)");
    EXPECT_ERR ("return { version = '1',\n\n  name = 'bad name' }", AAAX_EINVAL,
                "manifest.lua:3: name: \"bad name\" must be 1..128 characters "
                "of A-Z a-z 0-9 . _ - and not start with '.'");
    EXPECT_ERR ("return { version = '1',\n name = '' }", AAAX_EINVAL,
                "manifest.lua:2: name: \"\" must be 1..128");
    EXPECT_ERR ("return { version = '1',\n name = '.hidden' }", AAAX_EINVAL,
                "manifest.lua:2: name: \".hidden\" must be");
    EXPECT_ERR ("return { version = '1',\n name = 'a/b' }", AAAX_EINVAL,
                "manifest.lua:2: name: \"a/b\" must be");
    EXPECT_ERR ("return { version = '1',\n name = 'a\\0b' }", AAAX_EINVAL,
                "manifest.lua:2: name: contains a NUL byte");
    EXPECT_ERR ("return { version = '1',\n name = 'kernel.loader' }",
                AAAX_EINVAL,
                "manifest.lua:2: name: \"kernel.loader\" starts with "
                "\"kernel\", which is reserved for the kernel's own systems");
    EXPECT_ERR ("return { version = '1', name = 'kernel' }", AAAX_EINVAL,
                "manifest.lua:1: name: \"kernel\" starts with \"kernel\"");
    EXPECT_ERR ("return { version = '1', name = 'kernelish' }", AAAX_EINVAL,
                "manifest.lua:1: name: \"kernelish\" starts with");
    EXPECT_OK ("return { version = '1', name = 'my-kernel' }");
    EXPECT_OK ("return { version = '1', name = 'Kernel' }");
    EXPECT_OK ("return { version = '1', name = 'a_b.c-9' }");
    //  128 bytes fine, 129 not.
    char src[512], name[160];
    memset (name, 'n', 129);
    name[128] = '\0';
    snprintf (src, sizeof src, "return { version = '1', name = '%s' }", name);
    EXPECT_OK (src);
    name[128] = 'n';
    name[129] = '\0';
    snprintf (src, sizeof src, "return { version = '1', name = '%s' }", name);
    EXPECT_ERR (src, AAAX_EINVAL, "manifest.lua:1: name: \"nnnn");
    //  The last of two is the one Lua keeps, and the one named.
    EXPECT_ERR ("return { version = '1',\n name = 'ok',\n name = 'no way' }",
                AAAX_EINVAL, "manifest.lua:3: name: \"no way\"");
}

static void
test_version (void)
{
    EXPECT_ERR ("return { name = 'echo' }", AAAX_EINVAL,
                "manifest.lua: version: missing (as in version = \"1.0.0\")");
    EXPECT_ERR ("return {\n  name = 'echo',\n  version = '1.0 beta',\n}",
                AAAX_EINVAL,
                "manifest.lua:3: version: \"1.0 beta\" must be 1..63 printable "
                "ASCII characters without spaces");
    EXPECT_ERR ("return {\n  name = 'echo',\n  version = 1.0,\n}", AAAX_EINVAL,
                "manifest.lua:3: version: must be a string (got number)");
    EXPECT_ERR (with ("version = ''"), AAAX_EINVAL,
                "manifest.lua:3: version: \"\" must be 1..63");
    EXPECT_ERR (with ("version = '1\\t0'"), AAAX_EINVAL,
                "manifest.lua:3: version: \"1?0\" must be 1..63");
    EXPECT_ERR (with ("version = '1.\\xc3\\xa9'"), AAAX_EINVAL,
                "manifest.lua:3: version: \"1.??\" must be");
    EXPECT_OK ("return { name = 'echo', version = '2024-01-01+git.abc~rc1' }");
    char src[256], v[80];
    memset (v, '1', 63);
    v[63] = '\0';
    snprintf (src, sizeof src, "return { name = 'x', version = '%s' }", v);
    EXPECT_OK (src);
    v[63] = '1';
    v[64] = '\0';
    snprintf (src, sizeof src, "return { name = 'x', version = '%s' }", v);
    EXPECT_ERR (src, AAAX_EINVAL, "manifest.lua:1: version: \"111");
}

static void
test_permissions (void)
{
    app_manifest_t m;
    CHECK_EQ_INT (parse (with ("permissions = { 'chan.write:news', "
                               "'fs.write:*', 'net.fetch:https://x.org:8080/*',"
                               " 'chan.*:a b c', '*:x', 'kv_2.get:k' }"),
                         &m),
                  0);
    CHECK_EQ_INT (m.npermissions, 6);
    if (m.npermissions == 6)
        CHECK_EQ_STR (m.permissions[2], "net.fetch:https://x.org:8080/*");
    app_manifest_fini (&m);
    EXPECT_OK (with ("permissions = {}"));

    //  The element's index and its line.
    EXPECT_ERR (with ("  permissions = {\n"
                      "    'chan.write:news',\n"
                      "    'chanwrite',\n"
                      "  }"),
                AAAX_EINVAL,
                "manifest.lua:5: permissions[2]: \"chanwrite\" must be "
                "ACTION:TARGET, as in \"chan.write:news\"");
    EXPECT_ERR (with ("permissions = { 'Chan.write:x' }"), AAAX_EINVAL,
                "manifest.lua:3: permissions[1]: action \"Chan.write\" must be "
                "dotted lower-case words (a-z 0-9 _ *), as in chan.write");
    EXPECT_ERR (with ("permissions = { 'chan..write:x' }"), AAAX_EINVAL,
                "manifest.lua:3: permissions[1]: action \"chan..write\"");
    EXPECT_ERR (with ("permissions = { '.chan:x' }"), AAAX_EINVAL,
                "manifest.lua:3: permissions[1]: action \".chan\"");
    EXPECT_ERR (with ("permissions = { 'chan.:x' }"), AAAX_EINVAL,
                "manifest.lua:3: permissions[1]: action \"chan.\"");
    EXPECT_ERR (with ("permissions = { ':x' }"), AAAX_EINVAL,
                "manifest.lua:3: permissions[1]: action \"\"");
    EXPECT_ERR (with ("permissions = { 'chan write:x' }"), AAAX_EINVAL,
                "manifest.lua:3: permissions[1]: action \"chan write\"");
    EXPECT_ERR (with ("permissions = { 'a:b',\n 'chan.write:' }"), AAAX_EINVAL,
                "manifest.lua:4: permissions[2]: \"chan.write:\" has an empty "
                "target");
    EXPECT_ERR (with ("permissions = { 'chan.write:a\\nb' }"), AAAX_EINVAL,
                "manifest.lua:3: permissions[1]: the target of "
                "\"chan.write:a?b\" must be printable ASCII characters");
    EXPECT_ERR (with ("permissions = { 'chan.write:\\0' }"), AAAX_EINVAL,
                "manifest.lua:3: permissions[1]: contains a NUL byte");
    EXPECT_ERR (with ("permissions = {\n 'a:b',\n 42 }"), AAAX_EINVAL,
                "manifest.lua:5: permissions[2]: must be a string (got "
                "number)");
    EXPECT_ERR (with ("permissions = 'chan.write:x'"), AAAX_EINVAL,
                "manifest.lua:3: permissions: must be a list of strings (got "
                "string)");
    //  Holes, keys.
    EXPECT_ERR (
        with ("permissions = {\n 'a:b',\n nil,\n 'c:d' }"), AAAX_EINVAL,
        "manifest.lua:5: permissions[2]: is nil, but a list cannot have holes");
    EXPECT_ERR (with ("permissions = {\n 'a:b',\n x = 'c:d' }"), AAAX_EINVAL,
                "manifest.lua:5: permissions.x: must be a list of strings, "
                "without keys (found key \"x\")");
    EXPECT_ERR (with ("permissions = { [0] = 'a:b' }"), AAAX_EINVAL,
                "manifest.lua:3: permissions: must be a list of strings "
                "numbered 1, 2, ... (found key 0)");
    EXPECT_ERR (with ("permissions = { [1.5] = 'a:b' }"), AAAX_EINVAL,
                "manifest.lua:3: permissions: must be a list of strings "
                "numbered 1, 2, ... (found key 1.5)");
    EXPECT_ERR (with ("permissions = { [true] = 'a:b' }"), AAAX_EINVAL,
                "manifest.lua:3: permissions: must be a list of strings (found "
                "a boolean key)");

    //  512 bytes fine, 513 not.
    static char src[4096], perm[600];
    memcpy (perm, "fs.read:", 8);
    memset (perm + 8, 'x', 504);
    perm[512] = '\0';
    snprintf (src, sizeof src, "permissions = { '%s' }", perm);
    EXPECT_OK (with (src));
    perm[512] = 'x';
    perm[513] = '\0';
    snprintf (src, sizeof src, "permissions = { '%s' }", perm);
    EXPECT_ERR (with (src), AAAX_EINVAL,
                "manifest.lua:3: permissions[1]: longer than 512 bytes");

    //  256 entries fine, 257 too many.
    char code[512];
    snprintf (code, sizeof code,
              "local p = {}\nfor i = 1, 256 do p[i] = 'a:' .. i end\n"
              "return { name = 'x', version = '1',\n permissions = p }");
    EXPECT_OK (code);
    snprintf (code, sizeof code,
              "local p = {}\nfor i = 1, 257 do p[i] = 'a:' .. i end\n"
              "return { name = 'x', version = '1',\n permissions = p }");
    EXPECT_ERR (code, AAAX_ELIMIT,
                "manifest.lua:4: permissions: more than 256 entries");
}

static void
test_lines (void)
{
    //  Built by code: no line to name.
    EXPECT_ERR ("local t = { name = 'x' }\nt.version = 5\nreturn t",
                AAAX_EINVAL, "manifest.lua: version: must be a string");
    //  An element that expands (a call last in the list) makes the count
    //  differ: the field's line, not a wrong element's.
    EXPECT_ERR (
        with ("permissions =\n { 'a:b', table.unpack ({ 'c:d', 'bad' "
              "}) }"),
        AAAX_EINVAL,
        "manifest.lua:3: permissions[3]: \"bad\" must be ACTION:TARGET");
    //  A list given by code: the field's line.
    EXPECT_ERR ("local p = { 'a:b', 'bad' }\n"
                "return { name = 'x', version = '1',\n"
                "  permissions = p }",
                AAAX_EINVAL, "manifest.lua:3: permissions[2]: \"bad\" must be");
    //  Comments, long strings and nested tables do not confuse the scan.
    EXPECT_ERR ("--[[ return { name = 'a' } ]]\n"
                "local note = [==[\n version = 'x y'\n]==]\n"
                "return { -- version = 'bad'\n"
                "  name = 'x', ['version'] = { nested = { 1, 2 } },\n"
                "}\n",
                AAAX_EINVAL,
                "manifest.lua:6: version: must be a string (got table)");
    //  A chunk that does more after the table: the scan cannot tell.
    EXPECT_ERR ("return { name = 'x',\n version = 'a b' }, 2", AAAX_EINVAL,
                "manifest.lua: version: \"a b\"");

    //  The finder itself.
    const char *src = "-- app\n"
                      "return {\n"
                      "  name = 'x', version = '1',\n"
                      "  permissions = {\n"
                      "    'a:b',\n"
                      "    [[c:d]], f (), \"e:f\";\n"
                      "  },\n"
                      "  limits = { memory_kb = 1,\n"
                      "             kv_kb = 2 },\n"
                      "  [\"depends\"] = { 'q' },\n"
                      "}\n";
    size_t len = strlen (src), npos = 99;
    CHECK_EQ_INT (app_manifest_line (src, len, NULL, "name", 0, NULL), 3);
    CHECK_EQ_INT (app_manifest_line (src, len, NULL, "version", 0, NULL), 3);
    CHECK_EQ_INT (app_manifest_line (src, len, NULL, "permissions", 0, NULL),
                  4);
    CHECK_EQ_INT (app_manifest_line (src, len, NULL, "depends", 0, NULL), 10);
    CHECK_EQ_INT (app_manifest_line (src, len, NULL, "channels", 0, NULL), 0);
    CHECK_EQ_INT (app_manifest_line (src, len, "permissions", NULL, 1, &npos),
                  5);
    CHECK_EQ_INT (npos, 4);
    CHECK_EQ_INT (app_manifest_line (src, len, "permissions", NULL, 2, &npos),
                  6);
    CHECK_EQ_INT (app_manifest_line (src, len, "permissions", NULL, 4, &npos),
                  6);
    CHECK_EQ_INT (app_manifest_line (src, len, "permissions", NULL, 5, &npos),
                  0);
    CHECK_EQ_INT (app_manifest_line (src, len, "limits", "kv_kb", 0, NULL), 9);
    CHECK_EQ_INT (app_manifest_line (src, len, "limits", "memory_kb", 0, NULL),
                  8);
    CHECK_EQ_INT (app_manifest_line (src, len, "limits", "files_kb", 0, NULL),
                  0);
    CHECK_EQ_INT (app_manifest_line (src, len, "depends", NULL, 1, &npos), 10);
    CHECK_EQ_INT (app_manifest_line (src, len, "name", NULL, 1, &npos), 0);
    CHECK_EQ_INT (app_manifest_line (src, len, NULL, NULL, 0, &npos), 0);
    CHECK_EQ_INT (app_manifest_line (NULL, 0, NULL, "name", 0, &npos), 0);
    //  Cut short anywhere: no line past the text, never a crash.
    for (size_t cut = 0; cut + 1 < len; cut++) {
        int line = app_manifest_line (src, cut, NULL, "depends", 0, NULL);
        CHECK (line == 0);
        line = app_manifest_line (src, cut, "limits", "kv_kb", 0, NULL);
        CHECK (line == 0);
    }
    //  "\r\n" counts one line, as in Lua.
    const char *crlf = "return {\r\n name = 'x',\r\n\r\n version = 1 }";
    CHECK_EQ_INT (
        app_manifest_line (crlf, strlen (crlf), NULL, "version", 0, NULL), 4);
    EXPECT_ERR (crlf, AAAX_EINVAL, "manifest.lua:4: version: must be a string");
}

static void
test_channels (void)
{
    app_manifest_t m;
    CHECK_EQ_INT (
        parse (with ("channels = { 'news', 'orders.done', 'a_b-c' }"), &m), 0);
    CHECK_EQ_INT (m.nchannels, 3);
    app_manifest_fini (&m);
    EXPECT_ERR (with ("channels = {\n 'news',\n\n 'bad channel' }"),
                AAAX_EINVAL,
                "manifest.lua:6: channels[2]: \"bad channel\" must be 1..128 "
                "characters of A-Z a-z 0-9 . _ - and not start with '.'");
    EXPECT_ERR (with ("channels = { '' }"), AAAX_EINVAL,
                "manifest.lua:3: channels[1]: \"\" must be");
    EXPECT_ERR (with ("channels = { '.x' }"), AAAX_EINVAL,
                "manifest.lua:3: channels[1]: \".x\" must be");
    EXPECT_ERR (with ("channels = { {} }"), AAAX_EINVAL,
                "manifest.lua:3: channels[1]: must be a string (got table)");
    EXPECT_ERR (with ("channels = true"), AAAX_EINVAL,
                "manifest.lua:3: channels: must be a list of strings (got "
                "boolean)");
}

static void
test_depends (void)
{
    app_manifest_t m;
    CHECK_EQ_INT (parse (with ("depends = { 'store', 'log' }"), &m), 0);
    CHECK (m.ndepends == 2 && strcmp (m.depends[1], "log") == 0);
    app_manifest_fini (&m);
    EXPECT_ERR (with ("depends = {\n 'store',\n 'log',\n 'store' }"),
                AAAX_EINVAL,
                "manifest.lua:6: depends[3]: \"store\" is listed twice (also "
                "element 1)");
    EXPECT_ERR (with ("depends = { 'store',\n 'echo' }"), AAAX_EINVAL,
                "manifest.lua:4: depends[2]: an app cannot depend on itself "
                "(\"echo\")");
    EXPECT_ERR (with ("depends = { 'no way' }"), AAAX_EINVAL,
                "manifest.lua:3: depends[1]: \"no way\" must be 1..128");
    EXPECT_ERR (with ("depends = { 1 }"), AAAX_EINVAL,
                "manifest.lua:3: depends[1]: must be a string (got number)");
    EXPECT_ERR (with ("depends = 'store'"), AAAX_EINVAL,
                "manifest.lua:3: depends: must be a list of strings");
}

static void
test_limits (void)
{
    app_manifest_t m;
    CHECK_EQ_INT (parse (with ("limits = { memory_kb = 64, instructions = 1e3,"
                               " files_kb = 0, kv_kb = 16777216 }"),
                         &m),
                  0);
    CHECK_EQ_INT (m.limits.memory_kb, 64);
    CHECK_EQ_INT (m.limits.instructions, 1000);
    CHECK_EQ_INT (m.limits.files_kb, 0);
    CHECK_EQ_INT (m.limits.kv_kb, 16777216);
    app_manifest_fini (&m);
    CHECK_EQ_INT (parse (with ("limits = { memory_kb = 1048576, instructions "
                               "= 10000000000, files_kb = 16777216 }"),
                         &m),
                  0);
    CHECK_EQ_INT (m.limits.memory_kb, 1048576);
    CHECK_EQ_INT (m.limits.instructions, 10000000000ll);
    CHECK_EQ_INT (m.limits.kv_kb, 0);
    app_manifest_fini (&m);
    EXPECT_OK (with ("limits = {}"));

    EXPECT_ERR (with ("limits = {\n memory_kb = 63 }"), AAAX_EINVAL,
                "manifest.lua:4: limits.memory_kb: must be from 64 to 1048576 "
                "(got 63)");
    EXPECT_ERR (with ("limits = { memory_kb = 1048577 }"), AAAX_EINVAL,
                "manifest.lua:3: limits.memory_kb: must be from 64 to 1048576 "
                "(got 1048577)");
    EXPECT_ERR (with ("limits = {\n\n instructions = 999 }"), AAAX_EINVAL,
                "manifest.lua:5: limits.instructions: must be from 1000 to "
                "10000000000 (got 999)");
    EXPECT_ERR (with ("limits = { instructions = 1e10 + 1 }"), AAAX_EINVAL,
                "manifest.lua:3: limits.instructions: must be from 1000 to "
                "10000000000 (got 10000000001)");
    EXPECT_ERR (with ("limits = { files_kb = -1 }"), AAAX_EINVAL,
                "manifest.lua:3: limits.files_kb: must be from 0 to 16777216 "
                "(got -1)");
    EXPECT_ERR (with ("limits = { kv_kb = 16777217 }"), AAAX_EINVAL,
                "manifest.lua:3: limits.kv_kb: must be from 0 to 16777216 (got "
                "16777217)");
    EXPECT_ERR (with ("limits = { memory_kb = 100.5 }"), AAAX_EINVAL,
                "manifest.lua:3: limits.memory_kb: must be a whole number from "
                "64 to 1048576 (got a fraction)");
    EXPECT_ERR (with ("limits = { memory_kb = 1/0 }"), AAAX_EINVAL,
                "manifest.lua:3: limits.memory_kb: must be a whole number");
    EXPECT_ERR (with ("limits = { memory_kb = 0/0 }"), AAAX_EINVAL,
                "manifest.lua:3: limits.memory_kb: must be a whole number");
    EXPECT_ERR (with ("limits = { memory_kb = 1e300 }"), AAAX_EINVAL,
                "manifest.lua:3: limits.memory_kb: must be a whole number");
    EXPECT_ERR (with ("limits = { memory_kb = math.mininteger }"), AAAX_EINVAL,
                "manifest.lua:3: limits.memory_kb: must be from 64");
    EXPECT_ERR (with ("limits = { kv_kb = '100' }"), AAAX_EINVAL,
                "manifest.lua:3: limits.kv_kb: must be a whole number from 0 "
                "to 16777216 (got string)");
    EXPECT_ERR (with ("limits = { memory_kb = 100,\n memroy_kb = 10 }"),
                AAAX_EINVAL,
                "manifest.lua:4: limits.memroy_kb: unknown limit (known: "
                "memory_kb, instructions, files_kb, kv_kb)");
    EXPECT_ERR (with ("limits = { 100 }"), AAAX_EINVAL,
                "manifest.lua:3: limits: limits must be named, as in "
                "memory_kb = ... (found a number key)");
    EXPECT_ERR (with ("limits = 4096"), AAAX_EINVAL,
                "manifest.lua:3: limits: must be a table (got number)");
}

//  Loading from a directory ---------------------------------------------

static void
test_load (void)
{
    char dir[64], path[PATH_MAX];
    app_manifest_t m;
    make_app (dir, s_good);
    CHECK_EQ_INT (app_manifest_load (dir, &m, s_err, sizeof s_err), 0);
    CHECK_EQ_STR (m.name, "echo");
    char *real = realpath (dir, NULL);
    CHECK_EQ_STR (m.dir, real);
    CHECK_EQ_INT (strlen (m.digest), 64);
    char digest[65];
    CHECK_EQ_INT (app_manifest_digest (dir, digest, s_err, sizeof s_err), 0);
    CHECK_EQ_STR (m.digest, digest);
    app_manifest_fini (&m);
    app_manifest_fini (&m);

    //  Trailing slashes, and a relative path.
    snprintf (path, sizeof path, "%s//", dir);
    CHECK_EQ_INT (app_manifest_load (path, &m, s_err, sizeof s_err), 0);
    CHECK_EQ_STR (m.dir, real);
    app_manifest_fini (&m);
    char cwd[PATH_MAX];
    CHECK (getcwd (cwd, sizeof cwd) != NULL);
    CHECK_EQ_INT (chdir ("/tmp"), 0);
    CHECK_EQ_INT (app_manifest_load (dir + 5, &m, s_err, sizeof s_err), 0);
    CHECK_EQ_STR (m.dir, real);
    CHECK_EQ_STR (m.digest, digest);
    app_manifest_fini (&m);
    CHECK_EQ_INT (chdir (cwd), 0);

    //  Errors name DIR/manifest.lua:LINE.
    write_file (dir, "manifest.lua",
                "return {\n  name = 'echo',\n  version = '1 0',\n}\n");
    CHECK_EQ_INT (app_manifest_load (dir, &m, s_err, sizeof s_err),
                  AAAX_EINVAL);
    snprintf (path, sizeof path,
              "%s/manifest.lua:3: version: \"1 0\" must be 1..63", dir);
    CHECK (strncmp (s_err, path, strlen (path)) == 0);
    CHECK (m.permissions == NULL && m.name[0] == '\0');
    app_manifest_fini (&m);
    write_file (dir, "manifest.lua", "return {\n  name = 'echo',\n  =\n}\n");
    CHECK_EQ_INT (app_manifest_load (dir, &m, s_err, sizeof s_err),
                  AAAX_EINVAL);
    snprintf (path, sizeof path, "%s/manifest.lua:3: ", dir);
    CHECK (strncmp (s_err, path, strlen (path)) == 0);

    //  No main.lua; main.lua not a file.
    write_file (dir, "manifest.lua", s_good);
    snprintf (path, sizeof path, "%s/main.lua", dir);
    CHECK_EQ_INT (unlink (path), 0);
    CHECK_EQ_INT (app_manifest_load (dir, &m, s_err, sizeof s_err),
                  AAAX_ENOENT);
    snprintf (path, sizeof path, "%s: no main.lua", dir);
    CHECK_EQ_STR (s_err, path);
    make_dir (dir, "main.lua");
    CHECK_EQ_INT (app_manifest_load (dir, &m, s_err, sizeof s_err),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, "main.lua: not a regular file") != NULL);
    snprintf (path, sizeof path, "%s/main.lua", dir);
    CHECK_EQ_INT (rmdir (path), 0);
    CHECK_EQ_INT (symlink ("manifest.lua", path), 0);
    CHECK_EQ_INT (app_manifest_load (dir, &m, s_err, sizeof s_err),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, "main.lua: not a regular file") != NULL);
    CHECK_EQ_INT (unlink (path), 0);
    write_file (dir, "main.lua", "return {}\n");

    //  No manifest.lua.
    snprintf (path, sizeof path, "%s/manifest.lua", dir);
    CHECK_EQ_INT (unlink (path), 0);
    CHECK_EQ_INT (app_manifest_load (dir, &m, s_err, sizeof s_err),
                  AAAX_ENOENT);
    snprintf (path, sizeof path, "%s: no manifest.lua", dir);
    CHECK_EQ_STR (s_err, path);
    make_dir (dir, "manifest.lua");
    CHECK_EQ_INT (app_manifest_load (dir, &m, s_err, sizeof s_err),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, "/manifest.lua: not a regular file") != NULL);
    snprintf (path, sizeof path, "%s/manifest.lua", dir);
    CHECK_EQ_INT (rmdir (path), 0);

    //  Too big (checked before reading).
    char *big = (char *) malloc (APP_MANIFEST_MAX_SIZE + 2);
    memset (big, ' ', APP_MANIFEST_MAX_SIZE + 1);
    memcpy (big, "return {name='x',version='1'}", 29);
    big[APP_MANIFEST_MAX_SIZE + 1] = '\0';
    write_file (dir, "manifest.lua", big);
    CHECK_EQ_INT (app_manifest_load (dir, &m, s_err, sizeof s_err),
                  AAAX_ELIMIT);
    CHECK (strstr (s_err, "manifest.lua: larger than 65536 bytes") != NULL);
    big[APP_MANIFEST_MAX_SIZE] = '\0';
    write_file (dir, "manifest.lua", big);
    CHECK_EQ_INT (app_manifest_load (dir, &m, s_err, sizeof s_err), 0);
    app_manifest_fini (&m);
    free (big);

    //  A symlink in the app directory is refused by the digest.
    write_file (dir, "manifest.lua", s_good);
    snprintf (path, sizeof path, "%s/link.lua", dir);
    CHECK_EQ_INT (symlink ("main.lua", path), 0);
    CHECK_EQ_INT (app_manifest_load (dir, &m, s_err, sizeof s_err),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, "/link.lua: is a symbolic link") != NULL);
    CHECK (m.name[0] == '\0');
    app_manifest_fini (&m);
    CHECK_EQ_INT (unlink (path), 0);

    //  No such directory; not a directory.
    snprintf (path, sizeof path, "%s/nope", dir);
    CHECK_EQ_INT (app_manifest_load (path, &m, s_err, sizeof s_err),
                  AAAX_ENOENT);
    CHECK (strstr (s_err, "/nope: no such directory") != NULL);
    snprintf (path, sizeof path, "%s/main.lua", dir);
    CHECK_EQ_INT (app_manifest_load (path, &m, s_err, sizeof s_err),
                  AAAX_ENOENT);
    CHECK (strstr (s_err, "main.lua: not a directory") != NULL);
    CHECK_EQ_INT (app_manifest_load ("", &m, s_err, sizeof s_err), AAAX_EINVAL);
    CHECK_EQ_INT (app_manifest_load (NULL, &m, s_err, sizeof s_err),
                  AAAX_EINVAL);

    free (real);
    rmrf (dir);
}

//  The digest ------------------------------------------------------------

/*  The digest computed here from its definition, over (rel, content)
    pairs given in sorted order. */
static void
ref_digest (const char *const *files, size_t n, char out[65])
{
    crypto_generichash_state st;
    crypto_generichash_init (&st, NULL, 0, 32);
    for (size_t i = 0; i < n; i++) {
        const char *rel = files[2 * i], *text = files[2 * i + 1];
        crypto_generichash_update (&st, (const unsigned char *) rel,
                                   strlen (rel) + 1);
        unsigned char le[8];
        uint64_t len = strlen (text);
        for (int b = 0; b < 8; b++)
            le[b] = (unsigned char) (len >> (8 * b));
        crypto_generichash_update (&st, le, 8);
        crypto_generichash_update (&st, (const unsigned char *) text, len);
    }
    unsigned char hash[32];
    crypto_generichash_final (&st, hash, 32);
    sodium_bin2hex (out, 65, hash, 32);
}

static void
test_digest (void)
{
    char dir[64], path[PATH_MAX], a[65], b[65], want[65];
    make_app (dir, "return {}\n");
    make_dir (dir, "lib");
    write_file (dir, "lib/util.lua", "return 1\n");
    write_file (dir, "lib.txt", "");
    write_file (dir, ".hidden", "h");

    //  The definition: byte-wise order of relative paths ("lib.txt" before
    //  "lib/util.lua": '.' < '/'), hidden files included.
    const char *files[] = {
        ".hidden",      "h",
        "lib.txt",      "",
        "lib/util.lua", "return 1\n",
        "main.lua",     "return { start = function () end }\n",
        "manifest.lua", "return {}\n"
    };
    ref_digest (files, 5, want);
    CHECK_EQ_INT (app_manifest_digest (dir, a, s_err, sizeof s_err), 0);
    CHECK_EQ_STR (a, want);

    //  Stable.
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
        CHECK_EQ_STR (a, b);
    }
    //  An empty directory adds nothing.
    make_dir (dir, "empty");
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    CHECK_EQ_STR (a, b);

    //  Content changes it, even by one byte, even at the same length.
    write_file (dir, "lib/util.lua", "return 2\n");
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    CHECK (strcmp (a, b) != 0);
    write_file (dir, "lib/util.lua", "return 1\n");
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    CHECK_EQ_STR (a, b);
    //  A name changes it.
    char from[PATH_MAX], to[PATH_MAX];
    snprintf (from, sizeof from, "%s/lib/util.lua", dir);
    snprintf (to, sizeof to, "%s/lib/utils.lua", dir);
    CHECK_EQ_INT (rename (from, to), 0);
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    CHECK (strcmp (a, b) != 0);
    //  Moving a file into another directory changes it.
    snprintf (from, sizeof from, "%s/empty/util.lua", dir);
    CHECK_EQ_INT (rename (to, from), 0);
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    CHECK (strcmp (a, b) != 0);
    snprintf (to, sizeof to, "%s/lib/util.lua", dir);
    CHECK_EQ_INT (rename (from, to), 0);
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    CHECK_EQ_STR (a, b);
    //  A new empty file changes it.
    write_file (dir, "empty/x", "");
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    CHECK (strcmp (a, b) != 0);
    snprintf (path, sizeof path, "%s/empty/x", dir);
    CHECK_EQ_INT (unlink (path), 0);
    //  Boundaries between path, length and content are unambiguous.
    write_file (dir, "lib.txt", "x");
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    CHECK (strcmp (a, b) != 0);
    write_file (dir, "lib.txt", "");

    //  Symlinks anywhere, to anything, are refused, naming the path.
    snprintf (path, sizeof path, "%s/lib/link", dir);
    CHECK_EQ_INT (symlink ("/etc/passwd", path), 0);
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err),
                  AAAX_EINVAL);
    snprintf (path, sizeof path, "%s/lib/link: is a symbolic link", dir);
    CHECK (strncmp (s_err, path, strlen (path)) == 0);
    snprintf (path, sizeof path, "%s/lib/link", dir);
    CHECK_EQ_INT (unlink (path), 0);
    snprintf (path, sizeof path, "%s/dirlink", dir);
    CHECK_EQ_INT (symlink ("lib", path), 0);
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err),
                  AAAX_EINVAL);
    CHECK_EQ_INT (unlink (path), 0);
    //  A FIFO too (and opening it must not hang).
    snprintf (path, sizeof path, "%s/lib/fifo", dir);
    CHECK_EQ_INT (mkfifo (path, 0600), 0);
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, "/lib/fifo: not a regular file") != NULL);
    CHECK_EQ_INT (unlink (path), 0);
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    CHECK_EQ_STR (a, b);

    //  8 levels below the app's directory are fine, 9 are not.
    char rel[256] = "";
    for (int level = 1; level <= 8; level++) {
        strcat (rel, level > 1 ? "/d" : "d");
        make_dir (dir, rel);
    }
    char deep[300];
    snprintf (deep, sizeof deep, "%s/f", rel);
    write_file (dir, deep, "deep");
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    strcat (rel, "/d");
    make_dir (dir, rel);
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err),
                  AAAX_ELIMIT);
    CHECK (strstr (s_err, "nested deeper than 8 levels") != NULL);
    snprintf (path, sizeof path, "%s/d", dir);
    rmrf (path);

    //  1000 files fine, 1001 not.
    make_dir (dir, "many");
    for (int i = 0; i < 995; i++) {
        snprintf (rel, sizeof rel, "many/%d", i);
        write_file (dir, rel, "");
    }
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    write_file (dir, "many/last", "");
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err),
                  AAAX_ELIMIT);
    CHECK (strstr (s_err, "more than 1000 files") != NULL);
    snprintf (path, sizeof path, "%s/many", dir);
    rmrf (path);

    //  64 MiB fine, one byte more not (sparse files: cheap to make).
    snprintf (path, sizeof path, "%s/big", dir);
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK (fd >= 0);
    uint64_t others = 0;
    for (size_t i = 0; i < 5; i++) {
        struct stat st;
        snprintf (rel, sizeof rel, "%s/%s", dir, files[2 * i]);
        CHECK_EQ_INT (stat (rel, &st), 0);
        others += (uint64_t) st.st_size;
    }
    CHECK_EQ_INT (ftruncate (fd, (off_t) (APP_MANIFEST_DIGEST_BYTES - others)),
                  0);
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    CHECK_EQ_INT (
        ftruncate (fd, (off_t) (APP_MANIFEST_DIGEST_BYTES - others + 1)), 0);
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err),
                  AAAX_ELIMIT);
    CHECK (strstr (s_err, "more than 67108864 bytes") != NULL);
    close (fd);
    CHECK_EQ_INT (unlink (path), 0);

    //  No such directory.
    snprintf (path, sizeof path, "%s/nope", dir);
    CHECK_EQ_INT (app_manifest_digest (path, b, s_err, sizeof s_err),
                  AAAX_ENOENT);
    CHECK_EQ_INT (app_manifest_digest (dir, b, s_err, sizeof s_err), 0);
    CHECK_EQ_STR (a, b);
    rmrf (dir);
}

//  Dependency order ------------------------------------------------------

static app_manifest_t s_apps[8];

/*  Sets s_apps[i] to app name depending on the NULL-terminated list. The
    lists point to literals: never fini these. */
static app_manifest_t *
app (int i, const char *name, const char **deps)
{
    app_manifest_t *m = &s_apps[i];
    memset (m, 0, sizeof *m);
    snprintf (m->name, sizeof m->name, "%s", name);
    snprintf (m->dir, sizeof m->dir, "/apps/%s", name);
    size_t n = 0;
    while (deps && deps[n])
        n++;
    m->depends = (char **) deps;
    m->ndepends = n;
    return m;
}

/*  Orders ms; the result as names joined by spaces, or the error. */
static const char *
order (app_manifest_t **ms, size_t n, const char **loaded, size_t nloaded)
{
    static char out[1100];
    size_t idx[16];
    for (size_t i = 0; i < 16; i++)
        idx[i] = 77;
    int rc =
        app_manifest_order (ms, n, loaded, nloaded, idx, s_err, sizeof s_err);
    if (rc) {
        //  order is untouched on error.
        for (size_t i = 0; i < n; i++)
            CHECK_EQ_INT (idx[i], 77);
        snprintf (out, sizeof out, "%d: %s", rc, s_err);
        return out;
    }
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        CHECK (idx[i] < n);
        strcat (out, i ? " " : "");
        strcat (out, idx[i] < n ? ms[idx[i]]->name : "?");
    }
    return out;
}

static void
test_order (void)
{
    const char *none[] = { NULL };
    const char *on_a[] = { "a", NULL };
    const char *on_b[] = { "b", NULL };
    const char *on_c[] = { "c", NULL };
    const char *on_bc[] = { "b", "c", NULL };
    const char *on_x[] = { "x", NULL };
    app_manifest_t *ms[8];

    //  Independent apps keep their order.
    ms[0] = app (0, "c", none);
    ms[1] = app (1, "a", NULL);
    ms[2] = app (2, "b", none);
    CHECK_EQ_STR (order (ms, 3, NULL, 0), "c a b");
    CHECK_EQ_STR (order (ms, 0, NULL, 0), "");

    //  A chain given backwards.
    ms[0] = app (0, "c", on_b);
    ms[1] = app (1, "b", on_a);
    ms[2] = app (2, "a", none);
    CHECK_EQ_STR (order (ms, 3, NULL, 0), "a b c");
    //  Stable: an independent app given first stays first; one given
    //  last stays after the chain it does not need.
    ms[0] = app (0, "z", none);
    ms[1] = app (1, "c", on_b);
    ms[2] = app (2, "b", on_a);
    ms[3] = app (3, "a", none);
    ms[4] = app (4, "y", none);
    CHECK_EQ_STR (order (ms, 5, NULL, 0), "z a b c y");

    //  A diamond: d needs b and c, both need a.
    ms[0] = app (0, "d", on_bc);
    ms[1] = app (1, "c", on_a);
    ms[2] = app (2, "b", on_a);
    ms[3] = app (3, "a", none);
    CHECK_EQ_STR (order (ms, 4, NULL, 0), "a c b d");

    //  Dependencies already loaded.
    const char *loaded[] = { "q", "a", "m" };
    ms[0] = app (0, "c", on_b);
    ms[1] = app (1, "b", on_a);
    CHECK_EQ_STR (order (ms, 2, loaded, 3), "b c");
    //  Among those given, a dependency is ordered first even if loaded.
    ms[2] = app (2, "a", none);
    CHECK_EQ_STR (order (ms, 3, loaded, 3), "a b c");

    //  Missing.
    ms[0] = app (0, "c", on_b);
    ms[1] = app (1, "b", on_x);
    CHECK_EQ_STR (order (ms, 2, loaded, 3),
                  "-1: app 'b' depends on 'x', which is not loaded");
    CHECK_EQ_STR (order (ms, 1, NULL, 0),
                  "-1: app 'c' depends on 'b', which is not loaded");

    //  Cycles of 2 and 3 (and 1, for a hand-made manifest), named in
    //  order from the app given first.
    ms[0] = app (0, "a", on_b);
    ms[1] = app (1, "b", on_a);
    CHECK_EQ_STR (order (ms, 2, NULL, 0), "-1: dependency cycle: a -> b -> a");
    ms[0] = app (0, "x", none);
    ms[1] = app (1, "top", on_c);
    ms[2] = app (2, "b", on_c);
    ms[3] = app (3, "a", on_b);
    ms[4] = app (4, "c", on_a);
    CHECK_EQ_STR (order (ms, 5, NULL, 0),
                  "-1: dependency cycle: b -> c -> a -> b");
    ms[0] = app (0, "a", on_a);
    CHECK_EQ_STR (order (ms, 1, NULL, 0), "-1: dependency cycle: a -> a");

    //  The same name twice.
    ms[0] = app (0, "a", none);
    ms[1] = app (1, "b", none);
    ms[2] = app (2, "a", none);
    snprintf (s_apps[2].dir, sizeof s_apps[2].dir, "/other/a");
    CHECK_EQ_STR (order (ms, 3, NULL, 0),
                  "-1: app 'a' is given twice (/apps/a, /other/a)");
    s_apps[0].dir[0] = '\0';
    s_apps[2].dir[0] = '\0';
    CHECK_EQ_STR (order (ms, 3, NULL, 0),
                  "-1: app 'a' is given twice (manifest 1, manifest 3)");

    //  Arguments.
    size_t idx[2];
    CHECK_EQ_INT (
        app_manifest_order (NULL, 1, NULL, 0, idx, s_err, sizeof s_err),
        AAAX_EINVAL);
    CHECK_EQ_INT (app_manifest_order (ms, 1, NULL, 1, idx, s_err, sizeof s_err),
                  AAAX_EINVAL);
    CHECK_EQ_INT (
        app_manifest_order (ms, 1, NULL, 0, NULL, s_err, sizeof s_err),
        AAAX_EINVAL);

    //  Manifests from parse, in a longer random-ish chain: each app i
    //  depends on app i - 1, given in a scrambled order.
    app_manifest_t parsed[40];
    app_manifest_t *pp[40];
    size_t idx40[40];
    for (int i = 0; i < 40; i++) {
        int k = (i * 17) % 40; /* a permutation of 0..39 */
        char src[256];
        if (k == 0)
            snprintf (src, sizeof src,
                      "return { name = 'app%d', version = "
                      "'1' }",
                      k);
        else
            snprintf (src, sizeof src,
                      "return { name = 'app%d', version = '1', depends = { "
                      "'app%d' } }",
                      k, k - 1);
        CHECK_EQ_INT (parse (src, &parsed[i]), 0);
        pp[i] = &parsed[i];
    }
    CHECK_EQ_INT (
        app_manifest_order (pp, 40, NULL, 0, idx40, s_err, sizeof s_err), 0);
    for (int i = 0; i < 40; i++) {
        char want[16];
        snprintf (want, sizeof want, "app%d", i);
        CHECK_EQ_STR (parsed[idx40[i]].name, want);
    }
    for (int i = 0; i < 40; i++)
        app_manifest_fini (&parsed[i]);
}

int
main (void)
{
    test_valid ();
    test_shape ();
    test_lua_errors ();
    test_name ();
    test_version ();
    test_permissions ();
    test_lines ();
    test_channels ();
    test_depends ();
    test_limits ();
    test_load ();
    test_digest ();
    test_order ();
    TEST_DONE ();
}
