/*  broker_boot.c — builds the channel table (kernel channels, configured
    channels, a dead-letter queue beside each work-queue) and restores what
    the store kept: the kernel id, the id sequence, known systems, queued and
    mailbox messages, idempotency keys. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "broker_impl.h"
#include "hal_cap.h"
#include "hal_clock.h"

static int
s_add_bcast (broker_t *self, const char *name, uint32_t retain, bool public_,
             bool kernel, char *err, size_t errlen)
{
    broker_chan_t *ch = (broker_chan_t *) calloc (1, sizeof *ch);
    if (!ch || !(ch->name = strdup (name))
        || !(ch->bcast = chan_bcast_new (name, retain, public_))) {
        if (ch)
            free (ch->name);
        free (ch);
        snprintf (err, errlen, "out of memory");
        return AAAX_ENOMEM;
    }
    ch->kind = BROKER_CHAN_BROADCAST;
    ch->kernel = kernel;
    chan_heap_node_init (&ch->due);
    zhashx_insert (self->channels, name, ch);
    return 0;
}

static int
s_add_queue (broker_t *self, const char *name, const chan_queue_cfg_t *qc,
             bool kernel, char *err, size_t errlen)
{
    broker_chan_t *ch = (broker_chan_t *) calloc (1, sizeof *ch);
    broker_chan_t *dl = (broker_chan_t *) calloc (1, sizeof *dl);
    char dlq[AAAX_MAX_NAME + 8];
    snprintf (dlq, sizeof dlq, "%s.dlq", name);
    chan_queue_cfg_t dc = *qc;
    dc.max_attempts = 0; /* a dead letter stays until someone acknowledges */
    if (!ch || !dl || !(ch->name = strdup (name)) || !(dl->name = strdup (dlq))
        || !(ch->queue = chan_queue_new (name, qc, self->store))
        || !(dl->queue = chan_queue_new (dlq, &dc, self->store))) {
        if (ch) {
            chan_queue_destroy (&ch->queue);
            free (ch->name);
        }
        if (dl) {
            chan_queue_destroy (&dl->queue);
            free (dl->name);
        }
        free (ch);
        free (dl);
        snprintf (err, errlen, "out of memory");
        return AAAX_ENOMEM;
    }
    chan_queue_set_dlq (ch->queue, dl->queue);
    ch->kind = dl->kind = BROKER_CHAN_QUEUE;
    ch->kernel = dl->kernel = kernel;
    chan_heap_node_init (&ch->due);
    chan_heap_node_init (&dl->due);
    zhashx_insert (self->channels, name, ch);
    zhashx_insert (self->channels, dlq, dl);
    return 0;
}

int
broker_boot_channels (broker_t *self, char *err, size_t errlen)
{
    /*  Kernel channels (contract section 6). The heartbeat keeps its last
        message so a late subscriber can ask for it with SUB since "". */
    int rc = s_add_bcast (self, "heartbeat", 1, true, true, err, errlen);
    const char *registries[] = { "kernel.capabilities", "kernel.modules",
                                 "kernel.policy", "kernel.systems" };
    for (size_t i = 0; rc == 0 && i < 4; i++)
        rc = s_add_bcast (self, registries[i], 100, false, true, err, errlen);
    /*  Kernel request queues are not durable: a request lost with a crash
        gets no reply, and the requester asks again. */
    const char *queues[] = { "kernel.capability_requests", "kernel.gate",
                             "kernel.loader", "kernel.lifecycle",
                             "kernel.approvals" };
    chan_queue_cfg_t kq = { false, 5, 100000, 0, 30000 };
    for (size_t i = 0; rc == 0 && i < 5; i++)
        rc = s_add_queue (self, queues[i], &kq, true, err, errlen);
    for (size_t i = 0; rc == 0 && i < self->cfg->nchannels; i++) {
        const broker_chan_cfg_t *c = &self->cfg->channels[i];
        if (c->kind == BROKER_CHAN_BROADCAST)
            rc = s_add_bcast (self, c->name, c->retain, c->public, false, err,
                              errlen);
        else {
            chan_queue_cfg_t qc = { c->durable, c->max_attempts, c->max_len,
                                    c->max_bytes, c->lease_ms };
            rc = s_add_queue (self, c->name, &qc, false, err, errlen);
        }
    }
    return rc;
}

/*  ---- restore -------------------------------------------------------- */

typedef struct {
    broker_t *self;
    int64_t now, wall;
    uint64_t max_seq;
    size_t restored, orphans, bad;
} s_restore_t;

static int
s_restore_system (void *arg, const void *key, size_t klen, const void *val,
                  size_t vlen)
{
    s_restore_t *r = (s_restore_t *) arg;
    char id[AAAX_MAX_NAME + 1];
    if (klen == 0 || klen > AAAX_MAX_NAME || vlen != 16) {
        r->bad++;
        return 0;
    }
    memcpy (id, key, klen);
    id[klen] = 0;
    broker_sys_t *sys = broker_sys_get (r->self, id, r->wall);
    if (!sys)
        return AAAX_ENOMEM;
    memcpy (&sys->first_seen, val, 8);
    memcpy (&sys->last_seen, (const char *) val + 8, 8);
    return 0;
}

static int
s_restore_queue (void *arg, const void *key, size_t klen, const void *val,
                 size_t vlen)
{
    s_restore_t *r = (s_restore_t *) arg;
    char name[AAAX_MAX_NAME + 1];
    uint64_t seq;
    if (!chan_queue_parse_key (key, klen, name, &seq)) {
        r->bad++;
        return 0;
    }
    if (seq > r->max_seq)
        r->max_seq = seq;
    broker_chan_t *ch = broker_chan_find (r->self, name);
    if (!ch || !ch->queue || !chan_queue_durable (ch->queue)) {
        r->orphans++;
        return 0;
    }
    int rc = chan_queue_restore (ch->queue, seq, val, vlen, r->now, r->wall);
    if (rc == AAAX_EINVAL) {
        r->bad++;
        return 0;
    }
    if (rc == 0)
        r->restored++;
    return rc;
}

static int
s_restore_mbox (void *arg, const void *key, size_t klen, const void *val,
                size_t vlen)
{
    s_restore_t *r = (s_restore_t *) arg;
    char owner[AAAX_MAX_NAME + 1];
    uint64_t seq;
    if (!chan_queue_parse_key (key, klen, owner, &seq)) {
        r->bad++;
        return 0;
    }
    if (seq > r->max_seq)
        r->max_seq = seq;
    broker_sys_t *sys = broker_sys_get (r->self, owner, r->wall);
    if (!sys)
        return AAAX_ENOMEM;
    int rc = chan_mbox_restore (&sys->mbox, seq, val, vlen);
    if (rc == AAAX_EINVAL) {
        r->bad++;
        return 0;
    }
    if (rc == 0)
        r->restored++;
    return rc;
}

static int
s_restore_idem (void *arg, const void *key, size_t klen, const void *val,
                size_t vlen)
{
    s_restore_t *r = (s_restore_t *) arg;
    int rc = chan_idem_restore (r->self->idem, key, klen, val, vlen, r->wall);
    if (rc == AAAX_EINVAL) {
        r->bad++;
        return 0;
    }
    return rc;
}

static uint64_t
s_meta_u64 (broker_t *self, const char *key)
{
    void *val;
    size_t vlen;
    uint64_t v = 0;
    if (hal_store_get (self->store, HAL_DB_META, key, strlen (key), &val, &vlen)
        == 0) {
        if (vlen == 8)
            memcpy (&v, val, 8);
        free (val);
    }
    return v;
}

int
broker_boot_restore (broker_t *self, char *err, size_t errlen)
{
    void *val;
    size_t vlen;
    int rc =
        hal_store_get (self->store, HAL_DB_META, "kernel_id", 9, &val, &vlen);
    if (rc == 0 && vlen > 0 && vlen < sizeof self->kernel_id) {
        memcpy (self->kernel_id, val, vlen);
        self->kernel_id[vlen] = 0;
    }
    if (rc == 0)
        free (val);
    if (!self->kernel_id[0]) {
        uint8_t raw[8];
        randombytes_buf (raw, sizeof raw);
        char hex[17];
        sodium_bin2hex (hex, sizeof hex, raw, sizeof raw);
        snprintf (self->kernel_id, sizeof self->kernel_id, "aaax-%s", hex);
        hal_store_put (self->store, HAL_DB_META, "kernel_id", 9,
                       self->kernel_id, strlen (self->kernel_id));
        hal_store_put (self->store, HAL_DB_META, "format", 6, "1", 1);
    } else {
        if (hal_store_get (self->store, HAL_DB_META, "format", 6, &val, &vlen)
            == 0) {
            bool ok = vlen == 1 && *(char *) val == '1';
            free (val);
            if (!ok) {
                snprintf (err, errlen,
                          "the store in %s was written by an "
                          "incompatible version",
                          self->data_dir);
                return AAAX_EINVAL;
            }
        }
    }

    s_restore_t r = { self, hal_clock_mono_ms (), hal_clock_wall_ms (), 0, 0, 0,
                      0 };
    if ((rc =
             hal_store_scan (self->store, HAL_DB_SYSTEMS, s_restore_system, &r))
            != 0
        || (rc =
                hal_store_scan (self->store, HAL_DB_QUEUE, s_restore_queue, &r))
               != 0
        || (rc = hal_store_scan (self->store, HAL_DB_MBOX, s_restore_mbox, &r))
               != 0
        || (rc = hal_store_scan (self->store, HAL_DB_IDEM, s_restore_idem, &r))
               != 0) {
        snprintf (err, errlen, "cannot read the store: %s", aaax_strerror (rc));
        return rc;
    }
    if (r.orphans)
        zsys_warning ("broker: %zu stored messages belong to work-queues "
                      "that are no longer configured as durable; they stay "
                      "on disk untouched",
                      r.orphans);
    if (r.bad)
        zsys_warning ("broker: %zu unreadable records in the store ignored",
                      r.bad);
    if (r.restored)
        zsys_info ("broker: restored %zu messages", r.restored);

    /*  Ids continue after everything ever reserved or seen, and a new block
        is reserved (committed before the first id is handed out). */
    uint64_t reserved = s_meta_u64 (self, "seq_reserved");
    uint64_t next = (reserved > r.max_seq ? reserved : r.max_seq) + 1;
    self->ids.next_seq = next;
    uint64_t last_ms = s_meta_u64 (self, "last_ms");
    self->ids.last_ms = last_ms;
    self->seq_reserved = next + BROKER_SEQ_BLOCK;
    hal_store_put (self->store, HAL_DB_META, "seq_reserved", 12,
                   &self->seq_reserved, 8);
    return 0;
}

/*  ---- capabilities ---------------------------------------------------- */

/*  Live channel capabilities from the journal, installed before anything
    docks (the capability actor then finds them in place), so a system that
    docks at once after a restart holds its rights. Expired, unverifiable
    or orphaned ones are left for the capability actor to end. */
static int
s_boot_cap (void *arg, const void *key, size_t klen, const void *val,
            size_t vlen)
{
    broker_t *self = (broker_t *) arg;
    (void) key;
    (void) klen;
    if (!chan_mpk_valid (val, vlen, AAAX_MAX_DEPTH))
        return 0;
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    hal_cap_t cap;
    char why[128], id[65], subject[AAAX_MAX_NAME + 1], chan[AAAX_MAX_NAME + 1];
    int64_t wall = hal_clock_wall_ms ();
    if (msgpack_unpack_next (&u, (const char *) val, vlen, NULL)
            == MSGPACK_UNPACK_SUCCESS
        && hal_cap_from_obj (&u.data, &cap, why, sizeof why) == 0
        && hal_cap_verify (&cap, hal_keys_public (self->keys)) == 0
        && (int64_t) cap.expires * 1000 > wall && cap.idlen < sizeof id
        && cap.subjectlen < sizeof subject && cap.resourcelen > 5
        && cap.resourcelen - 5 < sizeof chan
        && memcmp (cap.resource, "chan:", 5) == 0) {
        memcpy (id, cap.id, cap.idlen);
        id[cap.idlen] = 0;
        memcpy (subject, cap.subject, cap.subjectlen);
        subject[cap.subjectlen] = 0;
        memcpy (chan, cap.resource + 5, cap.resourcelen - 5);
        chan[cap.resourcelen - 5] = 0;
        broker_sys_t *sys = broker_sys_find (self, subject);
        broker_chan_t *ch = broker_chan_find (self, chan);
        uint8_t rights = 0;
        for (size_t i = 0; i < cap.nrights; i++)
            rights |= broker_right_bit (cap.rights[i], cap.rightslen[i]);
        broker_cap_t *c = NULL;
        if (sys && ch && rights && !zhashx_lookup (self->caps, id))
            c = (broker_cap_t *) calloc (1, sizeof *c);
        if (c && zhashx_insert (self->caps, id, sys) == 0) {
            snprintf (c->id, sizeof c->id, "%s", id);
            c->chan = ch;
            c->rights = rights;
            c->expires_ms = (int64_t) cap.expires * 1000;
            c->next = sys->caps;
            sys->caps = c;
            if (c->expires_ms < self->cap_next_expiry)
                self->cap_next_expiry = c->expires_ms;
        } else
            free (c);
    }
    msgpack_unpacked_destroy (&u);
    return 0;
}

void
broker_boot_caps (broker_t *self)
{
    hal_audit_scan_db (self->audit, HAL_AUDIT_DB_CAPS, s_boot_cap, self);
}
