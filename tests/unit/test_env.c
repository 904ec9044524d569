/*  test_env.c — unit tests of envelope pairs (channels/chan_env.c): the
    pairs decode with msgpack-c to the expected map, chan_env_map with and
    without attempt, and chan_env_rechan changing only `chan`. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "aaax.h"
#include "chan_env.h"
#include "chan_id.h"
#include "chan_mpk.h"
#include "testutil.h"

static const msgpack_object *
get (const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen (key)
            && memcmp (k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static bool
is_str (const msgpack_object *o, const char *s, size_t len)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == len
           && (len == 0 || memcmp (o->via.str.ptr, s, len) == 0);
}

static bool
is_nil (const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_NIL;
}

typedef struct {
    msgpack_zone zone;
    msgpack_object obj;
} unpacked_t;

/*  Unpacks exactly one value from data (all of it); false otherwise. */
static bool
unpack (unpacked_t *u, const void *data, size_t len)
{
    msgpack_zone_init (&u->zone, 2048);
    size_t off = 0;
    int rc = msgpack_unpack ((const char *) data, len, &off, &u->zone, &u->obj);
    return rc == MSGPACK_UNPACK_SUCCESS && off == len;
}

static void
unpacked_fini (unpacked_t *u)
{
    msgpack_zone_destroy (&u->zone);
}

/*  A packed data value: {"task": "resize", "n": [1, -2, 3.5], "b": bin} */
static void
make_data (chan_buf_t *d)
{
    msgpack_packer pk;
    chan_buf_packer (d, &pk);
    msgpack_pack_map (&pk, 3);
    chan_pack_cstr (&pk, "task");
    chan_pack_cstr (&pk, "resize");
    chan_pack_cstr (&pk, "n");
    msgpack_pack_array (&pk, 3);
    msgpack_pack_int (&pk, 1);
    msgpack_pack_int (&pk, -2);
    msgpack_pack_double (&pk, 3.5);
    chan_pack_cstr (&pk, "b");
    msgpack_pack_bin (&pk, 2);
    msgpack_pack_bin_body (&pk, "\x00\xff", 2);
}

static void
test_pairs_and_map (void)
{
    char id[CHAN_ID_LEN];
    chan_id_format (1700000000123ULL, 99, id);
    chan_buf_t data, pairs, env;
    chan_buf_init (&data);
    chan_buf_init (&pairs);
    chan_buf_init (&env);
    make_data (&data);

    //  to and corr nil
    chan_env_pairs (&pairs, id, CHAN_ID_LEN, 1700000000.123, "worker-1", 8,
                    "jobs", 4, NULL, 0, NULL, 0, data.data, data.len);
    CHECK (!pairs.oom);
    //  the data bytes are the block's tail, unchanged
    CHECK (pairs.len > data.len);
    CHECK (memcmp (pairs.data + pairs.len - data.len, data.data, data.len)
           == 0);

    for (uint32_t attempt = 0; attempt < 3; attempt++) {
        chan_buf_reset (&env);
        chan_env_map (&env, pairs.data, pairs.len, attempt);
        CHECK (chan_mpk_valid (env.data, env.len, AAAX_MAX_DEPTH));
        unpacked_t u;
        CHECK (unpack (&u, env.data, env.len));
        const msgpack_object *m = &u.obj;
        CHECK_EQ_INT (m->type, MSGPACK_OBJECT_MAP);
        CHECK_EQ_INT (m->via.map.size, attempt ? 8 : 7);
        //  keys in this order: id ts from chan to corr data [attempt]
        const char *order[] = { "id", "ts",   "from", "chan",
                                "to", "corr", "data", "attempt" };
        for (uint32_t i = 0; i < m->via.map.size; i++)
            CHECK (
                is_str (&m->via.map.ptr[i].key, order[i], strlen (order[i])));
        CHECK (is_str (get (m, "id"), id, CHAN_ID_LEN));
        const msgpack_object *ts = get (m, "ts");
        CHECK (ts && ts->type == MSGPACK_OBJECT_FLOAT64);
        CHECK (ts && ts->via.f64 == 1700000000.123);
        CHECK (is_str (get (m, "from"), "worker-1", 8));
        CHECK (is_str (get (m, "chan"), "jobs", 4));
        CHECK (is_nil (get (m, "to")));
        CHECK (is_nil (get (m, "corr")));
        const msgpack_object *d = get (m, "data");
        CHECK (d && d->type == MSGPACK_OBJECT_MAP && d->via.map.size == 3);
        CHECK (is_str (get (d, "task"), "resize", 6));
        const msgpack_object *n = get (d, "n");
        CHECK (n && n->type == MSGPACK_OBJECT_ARRAY && n->via.array.size == 3);
        if (n && n->type == MSGPACK_OBJECT_ARRAY && n->via.array.size == 3) {
            CHECK_EQ_INT (n->via.array.ptr[1].via.i64, -2);
            CHECK (n->via.array.ptr[2].via.f64 == 3.5);
        }
        const msgpack_object *b = get (d, "b");
        CHECK (b && b->type == MSGPACK_OBJECT_BIN && b->via.bin.size == 2);
        const msgpack_object *a = get (m, "attempt");
        if (attempt) {
            CHECK (a && a->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
            CHECK (a && a->via.u64 == attempt);
        } else
            CHECK (a == NULL);
        unpacked_fini (&u);
    }
    //  the largest attempt
    chan_buf_reset (&env);
    chan_env_map (&env, pairs.data, pairs.len, UINT32_MAX);
    unpacked_t u;
    CHECK (unpack (&u, env.data, env.len));
    const msgpack_object *a = get (&u.obj, "attempt");
    CHECK (a && a->via.u64 == UINT32_MAX);
    unpacked_fini (&u);

    //  to and corr set; names with bytes that need str8
    char longname[AAAX_MAX_NAME];
    memset (longname, 'n', sizeof longname);
    chan_buf_reset (&pairs);
    chan_env_pairs (&pairs, id, CHAN_ID_LEN, 0.0, longname, sizeof longname,
                    "@peer", 5, "peer", 4, id, CHAN_ID_LEN, "\xc0", 1);
    chan_buf_reset (&env);
    chan_env_map (&env, pairs.data, pairs.len, 1);
    CHECK (unpack (&u, env.data, env.len));
    CHECK (is_str (get (&u.obj, "from"), longname, sizeof longname));
    CHECK (is_str (get (&u.obj, "chan"), "@peer", 5));
    CHECK (is_str (get (&u.obj, "to"), "peer", 4));
    CHECK (is_str (get (&u.obj, "corr"), id, CHAN_ID_LEN));
    CHECK (is_nil (get (&u.obj, "data")));
    unpacked_fini (&u);
    //  empty strings for to / corr are strings, not nil
    chan_buf_reset (&pairs);
    chan_env_pairs (&pairs, id, CHAN_ID_LEN, 1.5, "f", 1, "c", 1, "", 0, "", 0,
                    "\x01", 1);
    chan_buf_reset (&env);
    chan_env_map (&env, pairs.data, pairs.len, 0);
    CHECK (unpack (&u, env.data, env.len));
    CHECK (is_str (get (&u.obj, "to"), "", 0));
    CHECK (is_str (get (&u.obj, "corr"), "", 0));
    unpacked_fini (&u);

    chan_buf_fini (&data);
    chan_buf_fini (&pairs);
    chan_buf_fini (&env);
}

/*  Every pair but chan is byte-identical; chan is the new name. */
static void
check_rechan (const chan_buf_t *pairs, const char *newchan)
{
    chan_buf_t out, e1, e2;
    chan_buf_init (&out);
    chan_buf_init (&e1);
    chan_buf_init (&e2);
    CHECK_EQ_INT (chan_env_rechan (&out, pairs->data, pairs->len, newchan,
                                   strlen (newchan)),
                  0);
    chan_env_map (&e1, pairs->data, pairs->len, 2);
    chan_env_map (&e2, out.data, out.len, 2);
    CHECK (chan_mpk_valid (e2.data, e2.len, AAAX_MAX_DEPTH));
    unpacked_t u1, u2;
    CHECK (unpack (&u1, e1.data, e1.len));
    CHECK (unpack (&u2, e2.data, e2.len));
    CHECK_EQ_INT (u2.obj.via.map.size, 8);
    for (uint32_t i = 0; i < u1.obj.via.map.size && i < u2.obj.via.map.size;
         i++) {
        const msgpack_object_kv *a = &u1.obj.via.map.ptr[i];
        const msgpack_object_kv *b = &u2.obj.via.map.ptr[i];
        CHECK (msgpack_object_equal (a->key, b->key));
        if (is_str (&a->key, "chan", 4))
            CHECK (is_str (&b->val, newchan, strlen (newchan)));
        else
            CHECK (msgpack_object_equal (a->val, b->val));
    }
    unpacked_fini (&u1);
    unpacked_fini (&u2);
    //  the bytes before chan's value and after it are unchanged
    chan_mpk_reader_t r;
    chan_mpk_reader_init (&r, pairs->data, pairs->len);
    const uint8_t *chan_val = NULL, *chan_end = NULL;
    for (int i = 0; i < CHAN_ENV_PAIRS; i++) {
        chan_mpk_obj_t k;
        chan_mpk_next (&r, &k);
        const uint8_t *v = r.p;
        chan_mpk_skip (&r, AAAX_MAX_DEPTH);
        if (k.len == 4 && !memcmp (k.ptr, "chan", 4)) {
            chan_val = v;
            chan_end = r.p;
        }
    }
    CHECK (chan_val != NULL);
    if (chan_val) {
        size_t head = (size_t) (chan_val - pairs->data);
        size_t tail = (size_t) (pairs->data + pairs->len - chan_end);
        CHECK (out.len >= head + tail);
        CHECK (memcmp (out.data, pairs->data, head) == 0);
        CHECK (memcmp (out.data + out.len - tail, chan_end, tail) == 0);
    }
    chan_buf_fini (&out);
    chan_buf_fini (&e1);
    chan_buf_fini (&e2);
}

static void
test_rechan (void)
{
    char id[CHAN_ID_LEN];
    chan_id_format (1700000000000ULL, 5, id);
    chan_buf_t data, pairs;
    chan_buf_init (&data);
    chan_buf_init (&pairs);
    make_data (&data);
    chan_env_pairs (&pairs, id, CHAN_ID_LEN, 12.25, "w", 1, "jobs", 4, "x", 1,
                    NULL, 0, data.data, data.len);
    check_rechan (&pairs, "jobs.dlq");
    check_rechan (&pairs, "");
    //  31 -> 32 bytes: the string header grows from fixstr to str8
    char name[AAAX_MAX_NAME + 1];
    memset (name, 'q', sizeof name);
    name[32] = 0;
    check_rechan (&pairs, name);
    name[AAAX_MAX_NAME] = 0;
    check_rechan (&pairs, name);
    //  rechan of a rechan
    chan_buf_t once;
    chan_buf_init (&once);
    CHECK_EQ_INT (chan_env_rechan (&once, pairs.data, pairs.len, "a.dlq", 5),
                  0);
    check_rechan (&once, "b");
    //  a data value that itself contains a "chan" key is left alone
    chan_buf_t d2, p2;
    chan_buf_init (&d2);
    chan_buf_init (&p2);
    msgpack_packer pk;
    chan_buf_packer (&d2, &pk);
    msgpack_pack_map (&pk, 1);
    chan_pack_cstr (&pk, "chan");
    chan_pack_cstr (&pk, "inner");
    chan_env_pairs (&p2, id, CHAN_ID_LEN, 1.0, "w", 1, "outer", 5, NULL, 0,
                    NULL, 0, d2.data, d2.len);
    check_rechan (&p2, "outer.dlq");
    chan_buf_t o2;
    chan_buf_init (&o2);
    CHECK_EQ_INT (chan_env_rechan (&o2, p2.data, p2.len, "X", 1), 0);
    CHECK (o2.len >= d2.len);
    CHECK (memcmp (o2.data + o2.len - d2.len, d2.data, d2.len) == 0);

    //  not a block this module made
    chan_buf_t junk;
    chan_buf_init (&junk);
    CHECK_EQ_INT (chan_env_rechan (&junk, "", 0, "x", 1), AAAX_EINVAL);
    CHECK_EQ_INT (chan_env_rechan (&junk, "\x01\x02", 2, "x", 1), AAAX_EINVAL);
    for (size_t cut = 0; cut < pairs.len; cut++) {
        chan_buf_reset (&junk);
        CHECK_EQ_INT (chan_env_rechan (&junk, pairs.data, cut, "x", 1),
                      AAAX_EINVAL);
    }
    //  trailing bytes after the seventh pair
    chan_buf_t plus;
    chan_buf_init (&plus);
    chan_buf_append (&plus, pairs.data, pairs.len);
    chan_buf_append (&plus, "\x00", 1);
    CHECK_EQ_INT (chan_env_rechan (&junk, plus.data, plus.len, "x", 1),
                  AAAX_EINVAL);

    chan_buf_fini (&plus);
    chan_buf_fini (&junk);
    chan_buf_fini (&o2);
    chan_buf_fini (&d2);
    chan_buf_fini (&p2);
    chan_buf_fini (&once);
    chan_buf_fini (&data);
    chan_buf_fini (&pairs);
}

int
main (void)
{
    test_pairs_and_map ();
    test_rechan ();
    TEST_DONE ();
}
