/*  test_mbox.c — unit tests of mailboxes (channels/chan_mbox.c): append,
    the push window, ACK, undock and redelivery with attempt + 1, and
    restoring from the records a real hal_store kept. */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aaax.h"
#include "chan_mbox.h"
#include "chan_queue.h"
#include "hal_store.h"
#include "testutil.h"

static void
pairs_for (uint64_t seq, char *buf, size_t size, size_t *len)
{
    //  any bytes will do: the mailbox stores the block as it is
    int n = snprintf (buf, size, "pairs-of-%llu", (unsigned long long) seq);
    *len = (size_t) n;
}

static int
append (chan_mbox_t *mb, hal_store_t *st, const char *owner, uint64_t seq)
{
    char buf[64];
    size_t len;
    pairs_for (seq, buf, sizeof buf, &len);
    return chan_mbox_append (mb, st, owner, seq, buf, len);
}

static bool
msg_is (const chan_mmsg_t *m, uint64_t seq, uint32_t attempt)
{
    if (!m)
        return false;
    char buf[64];
    size_t len, plen;
    pairs_for (seq, buf, sizeof buf, &len);
    const uint8_t *p = chan_mmsg_pairs (m, &plen);
    bool ok = chan_mmsg_seq (m) == seq && chan_mmsg_attempt (m) == attempt
              && plen == len && memcmp (p, buf, len) == 0;
    if (!ok)
        fprintf (stderr, "  got seq %llu attempt %u, want %llu / %u\n",
                 (unsigned long long) chan_mmsg_seq (m), chan_mmsg_attempt (m),
                 (unsigned long long) seq, attempt);
    return ok;
}

static void
test_window (void)
{
    chan_mbox_t mb;
    chan_mbox_init (&mb);
    CHECK (chan_mbox_next (&mb, 10) == NULL);
    CHECK (!chan_mbox_ack (&mb, NULL, "me", 1));
    for (uint64_t s = 1; s <= 5; s++)
        CHECK_EQ_INT (append (&mb, NULL, "me", s), 0);
    CHECK_EQ_INT (mb.count, 5);
    CHECK_EQ_INT (mb.bytes, 5 * strlen ("pairs-of-1"));
    //  window 2: two pushed, then nothing until an ACK
    CHECK (msg_is (chan_mbox_next (&mb, 2), 1, 1));
    CHECK (msg_is (chan_mbox_next (&mb, 2), 2, 1));
    CHECK (chan_mbox_next (&mb, 2) == NULL);
    CHECK_EQ_INT (mb.inflight, 2);
    CHECK (chan_mbox_next (&mb, 0) == NULL);
    //  ACK of one not pushed, unknown, then the right one
    CHECK (!chan_mbox_ack (&mb, NULL, "me", 3));
    CHECK (!chan_mbox_ack (&mb, NULL, "me", 99));
    CHECK (chan_mbox_ack (&mb, NULL, "me", 1));
    CHECK (!chan_mbox_ack (&mb, NULL, "me", 1)); // twice
    CHECK_EQ_INT (mb.count, 4);
    CHECK_EQ_INT (mb.inflight, 1);
    CHECK (msg_is (chan_mbox_next (&mb, 2), 3, 1));
    CHECK (chan_mbox_next (&mb, 2) == NULL);
    //  ACK out of order (the newest in flight first)
    CHECK (chan_mbox_ack (&mb, NULL, "me", 3));
    CHECK (msg_is (chan_mbox_next (&mb, 2), 4, 1));
    CHECK (chan_mbox_ack (&mb, NULL, "me", 2));
    CHECK (msg_is (chan_mbox_next (&mb, 2), 5, 1));
    CHECK (chan_mbox_next (&mb, 2) == NULL); // nothing left
    CHECK_EQ_INT (mb.inflight, 2);
    //  a new message after everything was pushed is pushed next
    CHECK_EQ_INT (append (&mb, NULL, "me", 6), 0);
    CHECK (chan_mbox_next (&mb, 2) == NULL); // window full
    CHECK (msg_is (chan_mbox_next (&mb, 3), 6, 1));
    CHECK (chan_mbox_ack (&mb, NULL, "me", 4));
    CHECK (chan_mbox_ack (&mb, NULL, "me", 5));
    CHECK (chan_mbox_ack (&mb, NULL, "me", 6));
    CHECK_EQ_INT (mb.count, 0);
    CHECK_EQ_INT (mb.bytes, 0);
    CHECK_EQ_INT (mb.inflight, 0);
    CHECK (mb.head == NULL && mb.tail == NULL);
    //  and the mailbox is usable again
    CHECK_EQ_INT (append (&mb, NULL, "me", 7), 0);
    CHECK (msg_is (chan_mbox_next (&mb, 1), 7, 1));
    CHECK (chan_mbox_ack (&mb, NULL, "me", 7));
    chan_mbox_fini (&mb);
}

static void
test_undock (void)
{
    chan_mbox_t mb;
    chan_mbox_init (&mb);
    for (uint64_t s = 1; s <= 6; s++)
        append (&mb, NULL, "me", s);
    CHECK (msg_is (chan_mbox_next (&mb, 3), 1, 1));
    CHECK (msg_is (chan_mbox_next (&mb, 3), 2, 1));
    CHECK (msg_is (chan_mbox_next (&mb, 3), 3, 1));
    CHECK (chan_mbox_ack (&mb, NULL, "me", 2));
    chan_mbox_undock (&mb, NULL, "me");
    CHECK_EQ_INT (mb.inflight, 0);
    CHECK_EQ_INT (mb.count, 5);
    //  next dock: from the oldest, the unacknowledged ones with attempt + 1
    CHECK (msg_is (chan_mbox_next (&mb, 10), 1, 2));
    CHECK (msg_is (chan_mbox_next (&mb, 10), 3, 2));
    CHECK (msg_is (chan_mbox_next (&mb, 10), 4, 1));
    //  undock again mid-way: 1, 3, 4 pushed; 5, 6 never were
    chan_mbox_undock (&mb, NULL, "me");
    CHECK (msg_is (chan_mbox_next (&mb, 10), 1, 3));
    CHECK (msg_is (chan_mbox_next (&mb, 10), 3, 3));
    CHECK (msg_is (chan_mbox_next (&mb, 10), 4, 2));
    CHECK (msg_is (chan_mbox_next (&mb, 10), 5, 1));
    CHECK (msg_is (chan_mbox_next (&mb, 10), 6, 1));
    CHECK (chan_mbox_next (&mb, 10) == NULL);
    //  undock with everything pushed (cursor at the end)
    chan_mbox_undock (&mb, NULL, "me");
    CHECK (msg_is (chan_mbox_next (&mb, 10), 1, 4));
    //  undock with nothing in flight is harmless
    chan_mbox_t empty;
    chan_mbox_init (&empty);
    chan_mbox_undock (&empty, NULL, "me");
    CHECK (chan_mbox_next (&empty, 1) == NULL);
    chan_mbox_fini (&empty);
    //  fini frees what is left
    chan_mbox_fini (&mb);
    CHECK_EQ_INT (mb.count, 0);
    CHECK (mb.head == NULL);
}

static void
test_many (void)
{
    //  10000 messages through a window of 64, each window acked newest first
    chan_mbox_t mb;
    chan_mbox_init (&mb);
    for (uint64_t s = 1; s <= 10000; s++)
        append (&mb, NULL, "me", s);
    uint64_t expect = 1;
    int bad = 0;
    chan_mmsg_t *win[64];
    size_t n;
    while (true) {
        n = 0;
        chan_mmsg_t *m;
        while ((m = chan_mbox_next (&mb, 64)))
            win[n++] = m;
        if (!n)
            break;
        uint64_t seqs[64];
        for (size_t i = 0; i < n; i++) {
            seqs[i] = chan_mmsg_seq (win[i]);
            if (seqs[i] != expect++)
                bad++;
        }
        for (size_t i = n; i-- > 0;)
            if (!chan_mbox_ack (&mb, NULL, "me", seqs[i]))
                bad++;
    }
    CHECK_EQ_INT (bad, 0);
    CHECK_EQ_INT (expect, 10001);
    CHECK_EQ_INT (mb.count, 0);
    chan_mbox_fini (&mb);
}

//  Restore -------------------------------------------------------------------

typedef struct {
    const char *owner;
    chan_mbox_t *mb;
    int restored, other, failed;
} s_restore_t;

static int
s_restore_cb (void *arg, const void *key, size_t klen, const void *val,
              size_t vlen)
{
    s_restore_t *r = (s_restore_t *) arg;
    char name[AAAX_MAX_NAME + 1];
    uint64_t seq;
    if (!chan_queue_parse_key (key, klen, name, &seq)) {
        r->failed++;
        return 0;
    }
    if (strcmp (name, r->owner)) {
        r->other++;
        return 0;
    }
    if (chan_mbox_restore (r->mb, seq, val, vlen) == 0)
        r->restored++;
    else
        r->failed++;
    return 0;
}

static void
test_restore (void)
{
    char tmp[] = "/tmp/aaax-test-mbox-XXXXXX";
    CHECK (mkdtemp (tmp) != NULL);
    char dir[300], err[256];
    snprintf (dir, sizeof dir, "%s/store", tmp);
    hal_store_t *st = hal_store_open (dir, 64u << 20, err, sizeof err);
    CHECK (st != NULL);
    if (!st)
        return;
    chan_mbox_t mb, other;
    chan_mbox_init (&mb);
    chan_mbox_init (&other);
    for (uint64_t s = 1; s <= 5; s++)
        CHECK_EQ_INT (append (&mb, st, "sys-a", s), 0);
    //  a long pairs block (over the 1 KiB stack record)
    char big[5000];
    memset (big, 'z', sizeof big);
    CHECK_EQ_INT (chan_mbox_append (&mb, st, "sys-a", 6, big, sizeof big), 0);
    CHECK_EQ_INT (append (&other, st, "sys-ab", 7), 0);
    CHECK (hal_store_pending (st));
    CHECK (msg_is (chan_mbox_next (&mb, 10), 1, 1));
    CHECK (msg_is (chan_mbox_next (&mb, 10), 2, 1));
    CHECK (msg_is (chan_mbox_next (&mb, 10), 3, 1));
    CHECK (chan_mbox_ack (&mb, st, "sys-a", 2)); // deleted from the store
    chan_mbox_undock (&mb, st, "sys-a");         // 1 and 3: attempt 1
    CHECK (msg_is (chan_mbox_next (&mb, 10), 1, 2));
    //  ^ pushed again but not recorded (a push does not write)
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    chan_mbox_fini (&mb);
    chan_mbox_fini (&other);
    hal_store_destroy (&st);

    //  reopen and restore
    st = hal_store_open (dir, 64u << 20, err, sizeof err);
    CHECK (st != NULL);
    if (!st)
        return;
    chan_mbox_t mb2;
    chan_mbox_init (&mb2);
    s_restore_t r = { "sys-a", &mb2, 0, 0, 0 };
    CHECK_EQ_INT (hal_store_scan (st, HAL_DB_MBOX, s_restore_cb, &r), 0);
    CHECK_EQ_INT (r.restored, 5); // 1 3 4 5 6
    CHECK_EQ_INT (r.other, 1);
    CHECK_EQ_INT (r.failed, 0);
    CHECK (!hal_store_pending (st));
    CHECK_EQ_INT (mb2.count, 5);
    CHECK_EQ_INT (mb2.inflight, 0);
    CHECK (msg_is (chan_mbox_next (&mb2, 10), 1, 2));
    CHECK (msg_is (chan_mbox_next (&mb2, 10), 3, 2));
    CHECK (msg_is (chan_mbox_next (&mb2, 10), 4, 1));
    CHECK (msg_is (chan_mbox_next (&mb2, 10), 5, 1));
    chan_mmsg_t *m6 = chan_mbox_next (&mb2, 10);
    CHECK (m6 != NULL);
    if (m6) {
        size_t len;
        const uint8_t *p = chan_mmsg_pairs (m6, &len);
        CHECK_EQ_INT (len, sizeof big);
        CHECK (memcmp (p, big, sizeof big) == 0);
        CHECK_EQ_INT (chan_mmsg_attempt (m6), 1);
    }
    //  unreadable records
    uint8_t bad[16] = { 2 };
    CHECK_EQ_INT (chan_mbox_restore (&mb2, 50, bad, sizeof bad), AAAX_EINVAL);
    bad[0] = 1;
    CHECK_EQ_INT (chan_mbox_restore (&mb2, 50, bad, 7), AAAX_EINVAL);
    CHECK_EQ_INT (chan_mbox_restore (&mb2, 50, bad, 8), 0); // empty pairs
    CHECK_EQ_INT (mb2.count, 6);
    chan_mbox_fini (&mb2);
    hal_store_destroy (&st);
    tu_rmrf (dir);
    rmdir (tmp);
}

int
main (void)
{
    test_window ();
    test_undock ();
    test_many ();
    test_restore ();
    TEST_DONE ();
}
