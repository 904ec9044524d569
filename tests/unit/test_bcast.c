/*  test_bcast.c — unit tests of broadcast channels (channels/chan_bcast.c):
    subscribe / unsubscribe with swap-remove (including unsubscribing while
    iterating from the end), the retain ring and replay after a seq. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "chan_bcast.h"
#include "testutil.h"

static uint64_t s_rng = 0x1234567887654321ULL;

static uint64_t
rnd (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

/*  Every slot's sub knows its slot and channel. */
static int
consistent (const chan_bcast_t *ch)
{
    int bad = 0;
    for (size_t i = 0; i < chan_bcast_nsubs (ch); i++) {
        chan_sub_t *s = chan_bcast_sub (ch, i);
        if (!s || s->slot != i || s->chan != ch)
            bad++;
    }
    if (chan_bcast_sub (ch, chan_bcast_nsubs (ch)) != NULL)
        bad++;
    return bad;
}

static void
test_basics (void)
{
    chan_bcast_t *ch = chan_bcast_new ("events", 0, true);
    CHECK (ch != NULL);
    CHECK_EQ_STR (chan_bcast_name (ch), "events");
    CHECK (chan_bcast_public (ch));
    CHECK_EQ_INT (chan_bcast_nsubs (ch), 0);
    CHECK_EQ_INT (chan_bcast_retained (ch), 0);
    CHECK_EQ_INT (chan_bcast_published (ch), 0);
    CHECK (chan_bcast_sub (ch, 0) == NULL);
    chan_bcast_t *priv = chan_bcast_new ("p", 3, false);
    CHECK (!chan_bcast_public (priv));
    chan_bcast_destroy (&priv);
    CHECK (priv == NULL);
    chan_bcast_destroy (&priv);
    chan_bcast_destroy (NULL);

    //  a channel without retention counts publications but keeps nothing
    chan_bcast_published_msg (ch, 1, "x", 1);
    chan_bcast_published_msg (ch, 2, "y", 1);
    CHECK_EQ_INT (chan_bcast_published (ch), 2);
    CHECK_EQ_INT (chan_bcast_retained (ch), 0);
    chan_bcast_destroy (&ch);
}

static void
test_subscribe (void)
{
    enum { N = 40 };
    chan_bcast_t *ch = chan_bcast_new ("c", 0, false);
    chan_sub_t subs[N];
    int owners[N];
    for (int i = 0; i < N; i++) {
        owners[i] = i;
        memset (&subs[i], 0, sizeof subs[i]);
        subs[i].owner = &owners[i];
        CHECK_EQ_INT (chan_bcast_subscribe (ch, &subs[i]), 0);
        CHECK (subs[i].chan == ch);
    }
    CHECK_EQ_INT (chan_bcast_nsubs (ch), N);
    CHECK_EQ_INT (consistent (ch), 0);
    for (int i = 0; i < N; i++)
        CHECK (chan_bcast_sub (ch, (size_t) i) == &subs[i]);

    //  remove one in the middle: the last moves into its slot
    chan_bcast_unsubscribe (&subs[5]);
    CHECK (subs[5].chan == NULL);
    CHECK_EQ_INT (chan_bcast_nsubs (ch), N - 1);
    CHECK (chan_bcast_sub (ch, 5) == &subs[N - 1]);
    CHECK_EQ_INT (subs[N - 1].slot, 5);
    CHECK_EQ_INT (consistent (ch), 0);
    //  twice, and a sub that never subscribed: no-ops
    chan_bcast_unsubscribe (&subs[5]);
    chan_sub_t stranger = { NULL, NULL, 0, false };
    chan_bcast_unsubscribe (&stranger);
    CHECK_EQ_INT (chan_bcast_nsubs (ch), N - 1);
    //  a sub that claims this channel but a slot it does not hold changes
    //  nothing in the channel
    chan_sub_t liar = { NULL, ch, 3, false };
    chan_bcast_unsubscribe (&liar);
    CHECK (liar.chan == NULL);
    CHECK_EQ_INT (chan_bcast_nsubs (ch), N - 1);
    CHECK_EQ_INT (consistent (ch), 0);
    //  remove the last one
    chan_sub_t *last = chan_bcast_sub (ch, chan_bcast_nsubs (ch) - 1);
    chan_bcast_unsubscribe (last);
    CHECK_EQ_INT (chan_bcast_nsubs (ch), N - 2);
    CHECK_EQ_INT (consistent (ch), 0);
    //  subscribe again after leaving
    CHECK_EQ_INT (chan_bcast_subscribe (ch, &subs[5]), 0);
    CHECK_EQ_INT (chan_bcast_nsubs (ch), N - 1);
    CHECK_EQ_INT (consistent (ch), 0);

    //  Unsubscribe during reverse iteration: every sub is visited exactly
    //  once and exactly the chosen ones leave.
    int visited[N], before[N];
    memset (visited, 0, sizeof visited);
    for (int i = 0; i < N; i++)
        before[i] = subs[i].chan != NULL;
    for (size_t i = chan_bcast_nsubs (ch); i-- > 0;) {
        chan_sub_t *s = chan_bcast_sub (ch, i);
        int who = *(int *) s->owner;
        visited[who]++;
        if (who % 3 == 0)
            chan_bcast_unsubscribe (s);
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        if (visited[i] != before[i])
            bad++;
        if ((subs[i].chan != NULL) != (before[i] && i % 3 != 0))
            bad++;
    }
    CHECK_EQ_INT (bad, 0);
    CHECK_EQ_INT (consistent (ch), 0);
    for (size_t i = 0; i < chan_bcast_nsubs (ch); i++)
        CHECK (*(int *) chan_bcast_sub (ch, i)->owner % 3 != 0);

    //  destroy with subscribers left: they are marked unsubscribed
    chan_bcast_destroy (&ch);
    for (int i = 0; i < N; i++)
        CHECK (subs[i].chan == NULL);
}

/*  Random subscribe / unsubscribe / reverse sweeps against a reference. */
static void
test_random (void)
{
    enum { N = 300 };
    chan_bcast_t *ch = chan_bcast_new ("r", 0, false);
    static chan_sub_t subs[N];
    static int owners[N];
    static int ref[N];
    for (int i = 0; i < N; i++) {
        owners[i] = i;
        memset (&subs[i], 0, sizeof subs[i]);
        subs[i].owner = &owners[i];
    }
    int bad = 0;
    size_t count = 0;
    for (int op = 0; op < 20000; op++) {
        int i = (int) (rnd () % N);
        int what = (int) (rnd () % 10);
        if (what < 5) {
            if (!ref[i]) {
                if (chan_bcast_subscribe (ch, &subs[i]) != 0)
                    bad++;
                ref[i] = 1;
                count++;
            }
        } else if (what < 9) {
            chan_bcast_unsubscribe (&subs[i]);
            if (ref[i])
                count--;
            ref[i] = 0;
        } else {
            //  a sweep from the end dropping a random fifth; each current
            //  subscriber seen once
            static int seen[N];
            memset (seen, 0, sizeof seen);
            for (size_t j = chan_bcast_nsubs (ch); j-- > 0;) {
                chan_sub_t *s = chan_bcast_sub (ch, j);
                int who = *(int *) s->owner;
                seen[who]++;
                if (rnd () % 5 == 0) {
                    chan_bcast_unsubscribe (s);
                    ref[who] = 0;
                    count--;
                }
            }
            for (int j = 0; j < N; j++)
                if (seen[j] > 1)
                    bad++;
        }
        if (chan_bcast_nsubs (ch) != count)
            bad++;
        if (op % 100 == 0) {
            bad += consistent (ch);
            for (int j = 0; j < N; j++)
                if ((subs[j].chan != NULL) != ref[j])
                    bad++;
        }
    }
    CHECK_EQ_INT (bad, 0);
    chan_bcast_destroy (&ch);
}

//  Retention ----------------------------------------------------------------

typedef struct {
    char got[64][16];
    int n;
} s_replay_t;

static void
s_collect (void *arg, const void *body, size_t len)
{
    s_replay_t *r = (s_replay_t *) arg;
    if (r->n < 64 && len < 16) {
        memcpy (r->got[r->n], body, len);
        r->got[r->n][len] = 0;
    }
    r->n++;
}

static void
publish (chan_bcast_t *ch, uint64_t seq)
{
    char body[16];
    int n = snprintf (body, sizeof body, "m%llu", (unsigned long long) seq);
    chan_bcast_published_msg (ch, seq, body, (size_t) n);
}

static void
test_retain (void)
{
    chan_bcast_t *ch = chan_bcast_new ("c", 3, false);
    s_replay_t r;
    memset (&r, 0, sizeof r);
    CHECK_EQ_INT (chan_bcast_replay (ch, 0, s_collect, &r), 0);
    for (uint64_t s = 1; s <= 2; s++)
        publish (ch, s * 10);
    CHECK_EQ_INT (chan_bcast_retained (ch), 2);
    CHECK_EQ_INT (chan_bcast_replay (ch, 0, s_collect, &r), 2);
    CHECK_EQ_STR (r.got[0], "m10");
    CHECK_EQ_STR (r.got[1], "m20");
    for (uint64_t s = 3; s <= 5; s++)
        publish (ch, s * 10);
    //  the ring holds the last 3, oldest first
    CHECK_EQ_INT (chan_bcast_retained (ch), 3);
    CHECK_EQ_INT (chan_bcast_published (ch), 5);
    memset (&r, 0, sizeof r);
    CHECK_EQ_INT (chan_bcast_replay (ch, 0, s_collect, &r), 3);
    CHECK_EQ_INT (r.n, 3);
    CHECK_EQ_STR (r.got[0], "m30");
    CHECK_EQ_STR (r.got[1], "m40");
    CHECK_EQ_STR (r.got[2], "m50");
    //  after a seq: strictly greater ones
    memset (&r, 0, sizeof r);
    CHECK_EQ_INT (chan_bcast_replay (ch, 30, s_collect, &r), 2);
    CHECK_EQ_STR (r.got[0], "m40");
    CHECK_EQ_STR (r.got[1], "m50");
    memset (&r, 0, sizeof r);
    CHECK_EQ_INT (chan_bcast_replay (ch, 35, s_collect, &r), 2);
    memset (&r, 0, sizeof r);
    CHECK_EQ_INT (chan_bcast_replay (ch, 50, s_collect, &r), 0);
    CHECK_EQ_INT (chan_bcast_replay (ch, UINT64_MAX, s_collect, &r), 0);
    CHECK_EQ_INT (r.n, 0);
    //  an empty body is kept too
    chan_bcast_published_msg (ch, 60, "", 0);
    memset (&r, 0, sizeof r);
    CHECK_EQ_INT (chan_bcast_replay (ch, 55, s_collect, &r), 1);
    CHECK_EQ_STR (r.got[0], "");
    chan_bcast_destroy (&ch);

    //  many wraps of a ring of 7, checked against the last 7 published
    ch = chan_bcast_new ("w", 7, true);
    int bad = 0;
    for (uint64_t s = 1; s <= 1000; s++) {
        publish (ch, s);
        memset (&r, 0, sizeof r);
        uint64_t after = s > 4 ? s - 4 : 0;
        size_t n = chan_bcast_replay (ch, after, s_collect, &r);
        uint64_t first = s > 7 ? s - 6 : 1;
        if (first <= after)
            first = after + 1;
        if (n != s - first + 1)
            bad++;
        for (size_t i = 0; i < n && i < 64; i++) {
            char want[16];
            snprintf (want, sizeof want, "m%llu",
                      (unsigned long long) (first + i));
            if (strcmp (r.got[i], want))
                bad++;
        }
        if (chan_bcast_retained (ch) != (s < 7 ? s : 7))
            bad++;
    }
    CHECK_EQ_INT (bad, 0);
    CHECK_EQ_INT (chan_bcast_published (ch), 1000);
    //  a retain of 1 (like heartbeat)
    chan_bcast_t *one = chan_bcast_new ("heartbeat", 1, true);
    for (uint64_t s = 1; s <= 5; s++)
        publish (one, s);
    memset (&r, 0, sizeof r);
    CHECK_EQ_INT (chan_bcast_replay (one, 0, s_collect, &r), 1);
    CHECK_EQ_STR (r.got[0], "m5");
    chan_bcast_destroy (&one);
    chan_bcast_destroy (&ch);
}

int
main (void)
{
    test_basics ();
    test_subscribe ();
    test_random ();
    test_retain ();
    TEST_DONE ();
}
