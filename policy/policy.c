/*  policy.c — the policy engine: rules compiled to glob segments, indexed by
    literal action, decided without running Lua; exact sliding-log rate
    limits per (rule, subject); a BLAKE2b digest of the rules. */

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <czmq.h>
#include <sodium.h>

#include "aaax.h"
#include "policy.h"

#define S_FIELD_MAX 1024   /* bytes in a glob or a name */
#define S_RATE_MAX 1000000 /* largest N in "N/s" */
#define S_LOG_MIN 4        /* first ring size of a rate log */

//  ---------------------------------------------------------------------
//  Globs: '*' matches any run of bytes (possibly empty); everything else
//  is literal. A glob with stars is prefix * seg * seg ... * suffix: the
//  text must start with prefix, end with suffix, and hold the middle
//  segments in order in between; the leftmost place for each segment is
//  always as good as any, so one memmem per segment decides (no
//  backtracking, linear-ish in the text).

typedef enum { S_GLOB_ANY, S_GLOB_LITERAL, S_GLOB_STARS } s_glob_kind_t;

typedef struct {
    size_t offset; /* into text */
    size_t len;
} s_seg_t;

typedef struct {
    char *text; /* the glob as written */
    size_t len;
    s_glob_kind_t kind;
    size_t prefix; /* bytes before the first star */
    size_t suffix; /* bytes after the last star */
    s_seg_t *segs; /* non-empty segments between the stars */
    size_t nsegs;
} s_glob_t;

/*  Matches the prefix and the middle segments; the caller has checked
    that tlen >= prefix + suffix and that the text ends with the suffix. */
static int
s_match_stars (const char *glob, size_t prefix, size_t suffix,
               const s_seg_t *segs, size_t nsegs, const char *text, size_t tlen)
{
    if (memcmp (text, glob, prefix) != 0)
        return 0;
    const char *t = text + prefix;
    size_t left = tlen - prefix - suffix;
    for (size_t i = 0; i < nsegs; i++) {
        const char *seg = glob + segs[i].offset;
        const char *hit = (const char *) memmem (t, left, seg, segs[i].len);
        if (!hit)
            return 0;
        left -= (size_t) (hit - t) + segs[i].len;
        t = hit + segs[i].len;
    }
    return 1;
}

static int
s_glob_match (const s_glob_t *self, const char *text)
{
    switch (self->kind) {
    case S_GLOB_ANY: return 1;
    case S_GLOB_LITERAL: return strcmp (self->text, text) == 0;
    case S_GLOB_STARS:
    default: {
        size_t tlen = strlen (text);
        if (tlen < self->prefix + self->suffix)
            return 0;
        if (memcmp (text + tlen - self->suffix,
                    self->text + self->len - self->suffix, self->suffix)
            != 0)
            return 0;
        return s_match_stars (self->text, self->prefix, self->suffix,
                              self->segs, self->nsegs, text, tlen);
    }
    }
}

static void
s_glob_fini (s_glob_t *self)
{
    free (self->text);
    free (self->segs);
    memset (self, 0, sizeof (*self));
}

/*  Compiles text into self. Returns 0 or AAAX_ENOMEM. */
static int
s_glob_init (s_glob_t *self, const char *text)
{
    memset (self, 0, sizeof (*self));
    self->len = strlen (text);
    self->text = strdup (text);
    if (!self->text)
        return AAAX_ENOMEM;
    const char *first = (const char *) memchr (text, '*', self->len);
    if (!first) {
        self->kind = S_GLOB_LITERAL;
        return 0;
    }
    const char *last = (const char *) memrchr (text, '*', self->len);
    self->prefix = (size_t) (first - text);
    self->suffix = self->len - (size_t) (last - text) - 1;
    //  Count, then record, the non-empty segments between first and last.
    size_t nsegs = 0;
    for (const char *g = first + 1; g < last;) {
        const char *star =
            (const char *) memchr (g, '*', (size_t) (last - g) + 1);
        if (star > g)
            nsegs++;
        g = star + 1;
    }
    if (self->prefix == 0 && self->suffix == 0 && nsegs == 0) {
        self->kind = S_GLOB_ANY;
        return 0;
    }
    self->kind = S_GLOB_STARS;
    if (nsegs > 0) {
        self->segs = (s_seg_t *) calloc (nsegs, sizeof (s_seg_t));
        if (!self->segs) {
            s_glob_fini (self);
            return AAAX_ENOMEM;
        }
        for (const char *g = first + 1; g < last;) {
            const char *star =
                (const char *) memchr (g, '*', (size_t) (last - g) + 1);
            if (star > g) {
                self->segs[self->nsegs].offset = (size_t) (g - text);
                self->segs[self->nsegs].len = (size_t) (star - g);
                self->nsegs++;
            }
            g = star + 1;
        }
    }
    return 0;
}

int
policy_glob_match (const char *glob, const char *text)
{
    if (!glob || !text)
        return 0;
    size_t glen = strlen (glob);
    size_t tlen = strlen (text);
    const char *first = (const char *) memchr (glob, '*', glen);
    if (!first)
        return glen == tlen && memcmp (glob, text, glen) == 0;
    const char *last = (const char *) memrchr (glob, '*', glen);
    size_t prefix = (size_t) (first - glob);
    size_t suffix = glen - (size_t) (last - glob) - 1;
    if (tlen < prefix + suffix)
        return 0;
    if (memcmp (text + tlen - suffix, last + 1, suffix) != 0)
        return 0;
    if (memcmp (text, glob, prefix) != 0)
        return 0;
    const char *t = text + prefix;
    size_t left = tlen - prefix - suffix;
    for (const char *g = first + 1; g < last;) {
        const char *star =
            (const char *) memchr (g, '*', (size_t) (last - g) + 1);
        size_t seglen = (size_t) (star - g);
        if (seglen > 0) {
            const char *hit = (const char *) memmem (t, left, g, seglen);
            if (!hit)
                return 0;
            left -= (size_t) (hit - t) + seglen;
            t = hit + seglen;
        }
        g = star + 1;
    }
    return 1;
}

//  ---------------------------------------------------------------------
//  Rate logs: the times of the last accepted events of one subject under
//  one rule, oldest first, in a ring that grows by doubling up to N.

typedef struct {
    int64_t *ts;
    uint32_t cap;
    uint32_t count;
    uint32_t head; /* index of the oldest */
} s_log_t;

static void
s_log_destroy (void **item_p)
{
    s_log_t *self = (s_log_t *) *item_p;
    if (self) {
        free (self->ts);
        free (self);
        *item_p = NULL;
    }
}

static int64_t
s_log_newest (const s_log_t *self)
{
    return self->ts[(self->head + self->count - 1) % self->cap];
}

/*  Makes room for k more entries, as far as limit (the ring never holds
    more than limit: beyond, recording replaces the oldest). 0 or
    AAAX_ENOMEM. */
static int
s_log_reserve (s_log_t *self, uint32_t limit, uint32_t k)
{
    uint32_t want = k > limit - self->count ? limit : self->count + k;
    if (want <= self->cap)
        return 0;
    uint32_t cap = self->cap ? self->cap * 2 : S_LOG_MIN;
    if (cap < want)
        cap = want;
    if (cap > limit)
        cap = limit;
    int64_t *ts = (int64_t *) malloc ((size_t) cap * sizeof (int64_t));
    if (!ts)
        return AAAX_ENOMEM;
    for (uint32_t i = 0; i < self->count; i++)
        ts[i] = self->ts[(self->head + i) % self->cap];
    free (self->ts);
    self->ts = ts;
    self->cap = cap;
    self->head = 0;
    return 0;
}

/*  Would k events at now fit: at most limit - k recorded within the period
    ending at now, i.e. the oldest count + k - limit of them at or before
    now - period. */
static int
s_log_has_room (const s_log_t *self, uint32_t limit, int64_t period,
                int64_t now, uint32_t k)
{
    if (k > limit)
        return 0;
    if (self->count + k <= limit)
        return 1;
    uint32_t need = self->count + k - limit; /* 1..count */
    int64_t t = self->ts[(self->head + need - 1) % self->cap];
    return now >= t && (uint64_t) now - (uint64_t) t >= (uint64_t) period;
}

/*  Records an event that has room (and reserved space). Times that go
    backwards are recorded as the newest, to keep the ring ordered. */
static void
s_log_record (s_log_t *self, uint32_t limit, int64_t now)
{
    if (self->count > 0 && now < s_log_newest (self))
        now = s_log_newest (self);
    if (self->count < limit) {
        self->ts[(self->head + self->count) % self->cap] = now;
        self->count++;
    } else {
        self->ts[self->head] = now;
        self->head = (self->head + 1) % self->cap;
    }
}

//  ---------------------------------------------------------------------
//  Rules and the policy.

typedef struct {
    s_glob_t subject;
    s_glob_t action;
    s_glob_t target;
    policy_effect_t effect;
    uint32_t rate_n;     /* 0 when the rule has no rate */
    int64_t rate_period; /* ms */
    char rate_text[16];  /* canonical "N/u", or "" */
    char *name;
    char *source;   /* NULL when none was given */
    zhashx_t *logs; /* subject -> s_log_t, made on first use */
} s_rule_t;

typedef struct {
    int *idx; /* ascending rule indexes */
    size_t size;
    size_t cap;
} s_list_t;

struct _policy_t {
    s_rule_t **rules;
    size_t size;
    size_t cap;
    zhashx_t *by_action; /* literal action -> s_list_t */
    s_list_t wild;       /* rules whose action has a star */
    int digest_ok;
    char digest[crypto_generichash_BYTES * 2 + 1];
};

static void
s_rule_destroy (s_rule_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_rule_t *self = *self_p;
    s_glob_fini (&self->subject);
    s_glob_fini (&self->action);
    s_glob_fini (&self->target);
    free (self->name);
    free (self->source);
    zhashx_destroy (&self->logs);
    free (self);
    *self_p = NULL;
}

static void
s_list_destroy (void **item_p)
{
    s_list_t *self = (s_list_t *) *item_p;
    if (self) {
        free (self->idx);
        free (self);
        *item_p = NULL;
    }
}

/*  Makes room for one more index. 0 or AAAX_ENOMEM. */
static int
s_list_reserve (s_list_t *self)
{
    if (self->size < self->cap)
        return 0;
    size_t cap = self->cap ? self->cap * 2 : 4;
    int *idx = (int *) realloc (self->idx, cap * sizeof (int));
    if (!idx)
        return AAAX_ENOMEM;
    self->idx = idx;
    self->cap = cap;
    return 0;
}

policy_t *
policy_new (void)
{
    policy_t *self = (policy_t *) calloc (1, sizeof (policy_t));
    if (!self)
        return NULL;
    self->by_action = zhashx_new ();
    if (!self->by_action) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->by_action, s_list_destroy);
    return self;
}

void
policy_destroy (policy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    policy_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++)
        s_rule_destroy (&self->rules[i]);
    free (self->rules);
    zhashx_destroy (&self->by_action);
    free (self->wild.idx);
    free (self);
    *self_p = NULL;
}

size_t
policy_size (const policy_t *self)
{
    return self ? self->size : 0;
}

const char *
policy_effect_str (policy_effect_t effect)
{
    switch (effect) {
    case POLICY_ALLOW: return "allow";
    case POLICY_ASK: return "ask";
    case POLICY_DENY: return "deny";
    default: return "invalid";
    }
}

//  Error messages -------------------------------------------------------

/*  Writes "<source>: rule <n>: <message>" (or "rule <n>: ..." without a
    source) into err. */
static void s_rule_err (char *err, size_t errlen,
                        const policy_rule_spec_t *spec, size_t number,
                        const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

static void
s_rule_err (char *err, size_t errlen, const policy_rule_spec_t *spec,
            size_t number, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    int n;
    if (spec && spec->source && *spec->source)
        n = snprintf (err, errlen, "%s: rule %zu: ", spec->source, number);
    else
        n = snprintf (err, errlen, "rule %zu: ", number);
    if (n < 0 || (size_t) n >= errlen)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err + n, errlen - (size_t) n, fmt, args);
    va_end (args);
}

/*  Copies up to 64 bytes of text into out (at least 72 bytes) for quoting
    in a message: non-printable bytes become '?', a longer text ends in
    "...". */
static const char *
s_quote (const char *text, char *out)
{
    size_t i = 0;
    for (; text[i] && i < 64; i++) {
        unsigned char c = (unsigned char) text[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
    }
    if (text[i]) {
        memcpy (out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

//  Parsing ---------------------------------------------------------------

/*  "allow" | "ask" | "deny" -> effect. 0 or AAAX_EINVAL. */
static int
s_parse_effect (const char *text, policy_effect_t *effect)
{
    if (strcmp (text, "allow") == 0)
        *effect = POLICY_ALLOW;
    else if (strcmp (text, "ask") == 0)
        *effect = POLICY_ASK;
    else if (strcmp (text, "deny") == 0)
        *effect = POLICY_DENY;
    else
        return AAAX_EINVAL;
    return 0;
}

/*  "N/s" | "N/m" | "N/h", N decimal from 1 to S_RATE_MAX without sign,
    spaces or leading zeros. 0 or AAAX_EINVAL. */
static int
s_parse_rate (const char *text, uint32_t *n_p, int64_t *period_p)
{
    const char *p = text;
    if (!p)
        return AAAX_EINVAL;
    if (*p < '1' || *p > '9')
        return AAAX_EINVAL;
    uint32_t n = 0;
    while (*p >= '0' && *p <= '9') {
        n = n * 10 + (uint32_t) (*p - '0');
        if (n > S_RATE_MAX)
            return AAAX_EINVAL;
        p++;
    }
    if (p[0] != '/' || p[1] == '\0' || p[2] != '\0')
        return AAAX_EINVAL;
    switch (p[1]) {
    case 's': *period_p = 1000; break;
    case 'm': *period_p = 60000; break;
    case 'h': *period_p = 3600000; break;
    default: return AAAX_EINVAL;
    }
    *n_p = n;
    return 0;
}

/*  Checks that a glob or name is present, non-empty and short enough. */
static int
s_check_field (const char *value, const char *field,
               const policy_rule_spec_t *spec, size_t number, char *err,
               size_t errlen)
{
    if (!value) {
        s_rule_err (err, errlen, spec, number, "missing field \"%s\"", field);
        return AAAX_EINVAL;
    }
    if (!*value) {
        s_rule_err (err, errlen, spec, number, "field \"%s\" must not be empty",
                    field);
        return AAAX_EINVAL;
    }
    if (strlen (value) > S_FIELD_MAX) {
        s_rule_err (err, errlen, spec, number,
                    "field \"%s\" is longer than %d bytes", field, S_FIELD_MAX);
        return AAAX_EINVAL;
    }
    return 0;
}

int
policy_add (policy_t *self, const policy_rule_spec_t *spec, char *err,
            size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!self || !spec) {
        if (err && errlen)
            snprintf (err, errlen, "policy_add: no policy or rule");
        return AAAX_EINVAL;
    }
    size_t number = self->size + 1;
    char quoted[72];
    if (self->size >= (size_t) INT_MAX) {
        s_rule_err (err, errlen, spec, number, "too many rules");
        return AAAX_EINVAL;
    }
    if (s_check_field (spec->subject, "subject", spec, number, err, errlen)
        || s_check_field (spec->action, "action", spec, number, err, errlen)
        || s_check_field (spec->target, "target", spec, number, err, errlen))
        return AAAX_EINVAL;
    if (!spec->effect) {
        s_rule_err (err, errlen, spec, number, "missing field \"effect\"");
        return AAAX_EINVAL;
    }
    policy_effect_t effect;
    if (s_parse_effect (spec->effect, &effect)) {
        s_rule_err (err, errlen, spec, number,
                    "effect must be \"allow\", \"ask\" or \"deny\" "
                    "(got \"%s\")",
                    s_quote (spec->effect, quoted));
        return AAAX_EINVAL;
    }
    uint32_t rate_n = 0;
    int64_t rate_period = 0;
    if (spec->rate && s_parse_rate (spec->rate, &rate_n, &rate_period)) {
        s_rule_err (err, errlen, spec, number,
                    "rate must be \"N/s\", \"N/m\" or \"N/h\" with N from 1 "
                    "to %d (got \"%s\")",
                    S_RATE_MAX, s_quote (spec->rate, quoted));
        return AAAX_EINVAL;
    }
    if (spec->name
        && s_check_field (spec->name, "name", spec, number, err, errlen))
        return AAAX_EINVAL;

    //  Valid: build the rule, then make room everywhere, then commit.
    s_rule_t *rule = (s_rule_t *) calloc (1, sizeof (s_rule_t));
    if (!rule)
        goto err_nomem;
    if (s_glob_init (&rule->subject, spec->subject)
        || s_glob_init (&rule->action, spec->action)
        || s_glob_init (&rule->target, spec->target))
        goto err_rule;
    rule->effect = effect;
    rule->rate_n = rate_n;
    rule->rate_period = rate_period;
    if (rate_n)
        snprintf (rule->rate_text, sizeof (rule->rate_text), "%" PRIu32 "/%c",
                  rate_n, spec->rate[strlen (spec->rate) - 1]);
    if (spec->name)
        rule->name = strdup (spec->name);
    else if (asprintf (&rule->name, "rule#%zu", number) < 0)
        rule->name = NULL;
    if (!rule->name)
        goto err_rule;
    if (spec->source && !(rule->source = strdup (spec->source)))
        goto err_rule;

    if (self->size == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        s_rule_t **rules =
            (s_rule_t **) realloc (self->rules, cap * sizeof (s_rule_t *));
        if (!rules)
            goto err_rule;
        self->rules = rules;
        self->cap = cap;
    }
    s_list_t *list = &self->wild;
    if (rule->action.kind == S_GLOB_LITERAL) {
        list = (s_list_t *) zhashx_lookup (self->by_action, rule->action.text);
        if (!list) {
            list = (s_list_t *) calloc (1, sizeof (s_list_t));
            if (!list)
                goto err_rule;
            if (s_list_reserve (list)) {
                free (list);
                goto err_rule;
            }
            //  The hash owns the list from here (destructor set).
            if (zhashx_insert (self->by_action, rule->action.text, list)) {
                void *item = list;
                s_list_destroy (&item);
                goto err_rule;
            }
        }
    }
    if (s_list_reserve (list))
        goto err_rule; /* an empty list left in the hash is harmless */
    list->idx[list->size++] = (int) self->size;
    self->rules[self->size++] = rule;
    self->digest_ok = 0;
    return 0;

err_rule:
    s_rule_destroy (&rule);
err_nomem:
    s_rule_err (err, errlen, spec, number, "out of memory");
    return AAAX_ENOMEM;
}

//  Decisions -------------------------------------------------------------

static int
s_rule_matches (const s_rule_t *rule, const char *subject, const char *action,
                const char *target)
{
    return s_glob_match (&rule->action, action)
           && s_glob_match (&rule->subject, subject)
           && s_glob_match (&rule->target, target);
}

/*  The candidate rules for an action: two ascending lists, walked merged
    so that rules come in index order. */
typedef struct {
    const int *a;
    size_t na, ia;
    const int *b;
    size_t nb, ib;
} s_cursor_t;

static void
s_cursor_init (s_cursor_t *self, const policy_t *policy, const char *action)
{
    memset (self, 0, sizeof (*self));
    s_list_t *exact = (s_list_t *) zhashx_lookup (policy->by_action, action);
    if (exact) {
        self->a = exact->idx;
        self->na = exact->size;
    }
    self->b = policy->wild.idx;
    self->nb = policy->wild.size;
}

/*  Next candidate index, or -1 at the end. */
static int
s_cursor_next (s_cursor_t *self)
{
    if (self->ia < self->na
        && (self->ib >= self->nb || self->a[self->ia] < self->b[self->ib]))
        return self->a[self->ia++];
    if (self->ib < self->nb)
        return self->b[self->ib++];
    return -1;
}

/*  Severity: deny > ask > allow. */
static int
s_severity (policy_effect_t effect)
{
    return effect == POLICY_DENY ? 2 : effect == POLICY_ASK ? 1 : 0;
}

void
policy_decide (const policy_t *self, const char *subject, const char *action,
               const char *target, policy_decision_t *out)
{
    if (!out)
        return;
    out->effect = POLICY_DENY;
    out->rule = -1;
    if (!self)
        return;
    subject = subject ? subject : "";
    action = action ? action : "";
    target = target ? target : "";
    int best = -1, best_severity = -1;
    s_cursor_t cursor;
    s_cursor_init (&cursor, self, action);
    for (int i = s_cursor_next (&cursor); i >= 0; i = s_cursor_next (&cursor)) {
        const s_rule_t *rule = self->rules[i];
        int severity = s_severity (rule->effect);
        if (severity <= best_severity)
            continue; /* an earlier rule already wins over it */
        if (!s_rule_matches (rule, subject, action, target))
            continue;
        best = i;
        best_severity = severity;
        if (severity == 2)
            break; /* the first matching deny decides */
    }
    if (best >= 0) {
        out->effect = self->rules[best]->effect;
        out->rule = best;
    }
}

size_t
policy_rated (const policy_t *self, const char *subject, const char *action,
              const char *target, int *out, size_t max)
{
    if (!self)
        return 0;
    subject = subject ? subject : "";
    action = action ? action : "";
    target = target ? target : "";
    size_t count = 0;
    s_cursor_t cursor;
    s_cursor_init (&cursor, self, action);
    for (int i = s_cursor_next (&cursor); i >= 0; i = s_cursor_next (&cursor)) {
        const s_rule_t *rule = self->rules[i];
        if (!rule->rate_n || rule->effect == POLICY_DENY)
            continue;
        if (!s_rule_matches (rule, subject, action, target))
            continue;
        if (out && count < max)
            out[count] = i;
        count++;
    }
    return count;
}

//  Rate limits -----------------------------------------------------------

/*  Finds or makes the log of subject under rule, with room reserved for
    k more events (k <= the rule's rate_n). NULL on no memory. */
static s_log_t *
s_rule_log (s_rule_t *rule, const char *subject, uint32_t k)
{
    if (!rule->logs) {
        rule->logs = zhashx_new ();
        if (!rule->logs)
            return NULL;
        zhashx_set_destructor (rule->logs, s_log_destroy);
    }
    s_log_t *log = (s_log_t *) zhashx_lookup (rule->logs, subject);
    if (!log) {
        log = (s_log_t *) calloc (1, sizeof (s_log_t));
        if (!log)
            return NULL;
        if (zhashx_insert (rule->logs, subject, log)) {
            free (log);
            return NULL;
        }
    }
    if (s_log_reserve (log, rule->rate_n, k))
        return NULL;
    return log;
}

int
policy_rate_take (policy_t *self, const int *rules, size_t n,
                  const char *subject, int64_t now_ms)
{
    return policy_rate_take_n (self, rules, n, subject, now_ms, 1);
}

int
policy_rate_take_n (policy_t *self, const int *rules, size_t n,
                    const char *subject, int64_t now_ms, uint32_t k)
{
    if (!self || (n > 0 && !rules))
        return AAAX_EINVAL;
    subject = subject ? subject : "";
    for (size_t i = 0; i < n; i++)
        if (rules[i] < 0 || (size_t) rules[i] >= self->size)
            return AAAX_EINVAL;

    //  Phase one: every limit must have room; nothing is recorded.
    for (size_t i = 0; i < n; i++) {
        s_rule_t *rule = self->rules[rules[i]];
        if (!rule->rate_n)
            continue;
        if (k > rule->rate_n)
            return AAAX_ELIMIT; /* never fits: no log needed to say so */
        s_log_t *log = s_rule_log (rule, subject, k);
        if (!log)
            return AAAX_ENOMEM;
        if (!s_log_has_room (log, rule->rate_n, rule->rate_period, now_ms, k))
            return AAAX_ELIMIT;
    }
    //  Phase two: record in each (once per rule, even if listed twice).
    for (size_t i = 0; i < n; i++) {
        s_rule_t *rule = self->rules[rules[i]];
        if (!rule->rate_n)
            continue;
        size_t j = 0;
        while (j < i && rules[j] != rules[i])
            j++;
        if (j < i)
            continue;
        s_log_t *log = (s_log_t *) zhashx_lookup (rule->logs, subject);
        assert (log);
        for (uint32_t e = 0; e < k; e++)
            s_log_record (log, rule->rate_n, now_ms);
    }
    return 0;
}

void
policy_rate_gc (policy_t *self, int64_t now_ms)
{
    if (!self)
        return;
    for (size_t r = 0; r < self->size; r++) {
        s_rule_t *rule = self->rules[r];
        if (!rule->logs || zhashx_size (rule->logs) == 0)
            continue;
        //  Collect first: the hash must not change while iterating.
        zlist_t *idle = zlist_new ();
        if (!idle)
            return;
        for (s_log_t *log = (s_log_t *) zhashx_first (rule->logs); log;
             log = (s_log_t *) zhashx_next (rule->logs)) {
            int drop = 1;
            if (log->count > 0) {
                int64_t newest = s_log_newest (log);
                drop = now_ms >= newest
                       && (uint64_t) now_ms - (uint64_t) newest
                              >= (uint64_t) rule->rate_period;
            }
            if (drop)
                zlist_append (idle, (void *) zhashx_cursor (rule->logs));
        }
        for (const char *key = (const char *) zlist_first (idle); key;
             key = (const char *) zlist_next (idle))
            zhashx_delete (rule->logs, key);
        zlist_destroy (&idle);
    }
}

int
policy_parse_rate (const char *text, uint32_t *n, int64_t *period_ms)
{
    uint32_t n_ = 0;
    int64_t period_ = 0;
    int rc = s_parse_rate (text, &n_, &period_);
    if (rc == 0) {
        if (n)
            *n = n_;
        if (period_ms)
            *period_ms = period_;
    }
    return rc;
}

//  Copies ----------------------------------------------------------------

policy_t *
policy_clone (const policy_t *src)
{
    if (!src)
        return NULL;
    policy_t *self = policy_new ();
    if (!self)
        return NULL;
    //  Re-adding each rule as written compiles it the same way; the name
    //  is always given, so the digest comes out identical.
    for (size_t i = 0; i < src->size; i++) {
        policy_rule_spec_t spec;
        char err[64];
        if (policy_rule_spec (src, (int) i, &spec)
            || policy_add (self, &spec, err, sizeof (err))) {
            policy_destroy (&self);
            return NULL;
        }
    }
    return self;
}

//  Digest and accessors --------------------------------------------------

static void
s_digest_field (crypto_generichash_state *state, const char *text)
{
    uint64_t len = text ? strlen (text) : 0;
    unsigned char prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (unsigned char) (len >> (56 - 8 * i));
    crypto_generichash_update (state, prefix, sizeof (prefix));
    if (len)
        crypto_generichash_update (state, (const unsigned char *) text, len);
}

const char *
policy_digest (policy_t *self)
{
    if (!self)
        return NULL;
    if (self->digest_ok)
        return self->digest;
    //  "aaax-policy-1", the rule count, then per rule six length-prefixed
    //  fields: subject, action, target, effect, rate ("" if none), name.
    crypto_generichash_state state;
    unsigned char hash[crypto_generichash_BYTES];
    crypto_generichash_init (&state, NULL, 0, sizeof (hash));
    s_digest_field (&state, "aaax-policy-1");
    char count[24];
    snprintf (count, sizeof (count), "%zu", self->size);
    s_digest_field (&state, count);
    for (size_t i = 0; i < self->size; i++) {
        const s_rule_t *rule = self->rules[i];
        s_digest_field (&state, rule->subject.text);
        s_digest_field (&state, rule->action.text);
        s_digest_field (&state, rule->target.text);
        s_digest_field (&state, policy_effect_str (rule->effect));
        s_digest_field (&state, rule->rate_text);
        s_digest_field (&state, rule->name);
    }
    crypto_generichash_final (&state, hash, sizeof (hash));
    sodium_bin2hex (self->digest, sizeof (self->digest), hash, sizeof (hash));
    self->digest_ok = 1;
    return self->digest;
}

const char *
policy_rule_name (const policy_t *self, int rule)
{
    assert (self && rule >= 0 && (size_t) rule < self->size);
    return self->rules[rule]->name;
}

const char *
policy_rule_source (const policy_t *self, int rule)
{
    assert (self && rule >= 0 && (size_t) rule < self->size);
    return self->rules[rule]->source ? self->rules[rule]->source : "";
}

policy_effect_t
policy_rule_effect (const policy_t *self, int rule)
{
    assert (self && rule >= 0 && (size_t) rule < self->size);
    return self->rules[rule]->effect;
}

int
policy_rule_spec (const policy_t *self, int rule, policy_rule_spec_t *out)
{
    if (!self || !out || rule < 0 || (size_t) rule >= self->size)
        return AAAX_EINVAL;
    const s_rule_t *r = self->rules[rule];
    out->subject = r->subject.text;
    out->action = r->action.text;
    out->target = r->target.text;
    out->effect = policy_effect_str (r->effect);
    out->rate = r->rate_n ? r->rate_text : NULL;
    out->name = r->name;
    out->source = r->source;
    return 0;
}

//  Self test -------------------------------------------------------------

#define S_CHECK(cond)                                                     \
    do {                                                                  \
        if (!(cond)) {                                                    \
            zsys_error ("policy_test: %s:%d: check failed: %s", __FILE__, \
                        __LINE__, #cond);                                 \
            failures++;                                                   \
        }                                                                 \
    } while (0)

static int
s_add (policy_t *self, const char *subject, const char *action,
       const char *target, const char *effect, const char *rate)
{
    policy_rule_spec_t spec = { subject, action, target,    effect,
                                rate,    NULL,   "selftest" };
    char err[256];
    return policy_add (self, &spec, err, sizeof (err));
}

int
policy_test (int verbose)
{
    int failures = 0;
    if (verbose)
        zsys_info ("policy_test: globs");
    S_CHECK (policy_glob_match ("*", ""));
    S_CHECK (policy_glob_match ("*", "anything"));
    S_CHECK (policy_glob_match ("", ""));
    S_CHECK (!policy_glob_match ("", "x"));
    S_CHECK (policy_glob_match ("a*c", "abc"));
    S_CHECK (policy_glob_match ("a*c", "ac"));
    S_CHECK (!policy_glob_match ("a*c", "ab"));
    S_CHECK (policy_glob_match ("*b*d*", "abcde"));
    S_CHECK (!policy_glob_match ("*d*b*", "abcde"));
    S_CHECK (!policy_glob_match ("aa*aa", "aaa"));
    S_CHECK (policy_glob_match ("aa*aa", "aaaa"));

    if (verbose)
        zsys_info ("policy_test: decisions");
    policy_t *policy = policy_new ();
    S_CHECK (policy);
    if (!policy)
        return 1;
    policy_decision_t d;
    policy_decide (policy, "a", "b", "c", &d);
    S_CHECK (d.effect == POLICY_DENY && d.rule == -1);
    S_CHECK (s_add (policy, "*", "chan.read", "*", "allow", "2/s") == 0);
    S_CHECK (s_add (policy, "agent-*", "chan.*", "x*", "ask", NULL) == 0);
    S_CHECK (s_add (policy, "*", "*", "secret", "deny", NULL) == 0);
    S_CHECK (s_add (policy, "*", "*", "*", "maybe", NULL) == AAAX_EINVAL);
    S_CHECK (s_add (policy, "*", "*", "*", "allow", "0/s") == AAAX_EINVAL);
    S_CHECK (policy_size (policy) == 3);
    policy_decide (policy, "bob", "chan.read", "news", &d);
    S_CHECK (d.effect == POLICY_ALLOW && d.rule == 0);
    policy_decide (policy, "agent-1", "chan.read", "xy", &d);
    S_CHECK (d.effect == POLICY_ASK && d.rule == 1);
    policy_decide (policy, "agent-1", "chan.read", "secret", &d);
    S_CHECK (d.effect == POLICY_DENY && d.rule == 2);

    if (verbose)
        zsys_info ("policy_test: rates");
    int rated[4];
    S_CHECK (policy_rated (policy, "bob", "chan.read", "news", rated, 4) == 1);
    S_CHECK (rated[0] == 0);
    S_CHECK (policy_rate_take (policy, rated, 1, "bob", 0) == 0);
    S_CHECK (policy_rate_take (policy, rated, 1, "bob", 500) == 0);
    S_CHECK (policy_rate_take (policy, rated, 1, "bob", 999) == AAAX_ELIMIT);
    S_CHECK (policy_rate_take (policy, rated, 1, "bob", 1000) == 0);
    S_CHECK (policy_rate_take (policy, rated, 1, "eve", 999) == 0);
    /*  k at once (WRITE batches): all or nothing. */
    S_CHECK (policy_rate_take_n (policy, rated, 1, "carl", 0, 3)
             == AAAX_ELIMIT);
    S_CHECK (policy_rate_take_n (policy, rated, 1, "carl", 0, 2) == 0);
    S_CHECK (policy_rate_take_n (policy, rated, 1, "carl", 500, 1)
             == AAAX_ELIMIT);
    S_CHECK (policy_rate_take_n (policy, rated, 1, "carl", 1000, 2)
             == 0); /* both of t=0 have left the window */
    S_CHECK (policy_rate_take_n (policy, rated, 1, "carl", 1999, 1)
             == AAAX_ELIMIT);
    S_CHECK (policy_rate_take (policy, rated, 1, "dan", 0) == 0);
    S_CHECK (policy_rate_take_n (policy, rated, 1, "dan", 100, 2)
             == AAAX_ELIMIT);
    S_CHECK (policy_rate_take (policy, rated, 1, "dan", 100)
             == 0); /* the refused pair recorded nothing */
    S_CHECK (policy_rate_take (policy, rated, 1, "dan", 200) == AAAX_ELIMIT);
    policy_rate_gc (policy, 5000);
    S_CHECK (zhashx_size (policy->rules[0]->logs) == 0);

    const char *digest = policy_digest (policy);
    S_CHECK (digest && strlen (digest) == 64);
    policy_destroy (&policy);
    S_CHECK (policy == NULL);

    /*  Batches larger than the first ring (S_LOG_MIN): every event kept in
        order, the ring grown to hold them. */
    policy_t *rp = policy_new ();
    S_CHECK (rp && s_add (rp, "*", "chan.write", "five", "allow", "5/s") == 0);
    S_CHECK (s_add (rp, "*", "chan.write", "big", "allow", "1000/s") == 0);
    int r5[2], rbig[2];
    S_CHECK (policy_rated (rp, "ann", "chan.write", "five", r5, 2) == 1);
    S_CHECK (policy_rated (rp, "ann", "chan.write", "big", rbig, 2) == 1);
    S_CHECK (policy_rate_take_n (rp, r5, 1, "ann", 0, 3) == 0);
    S_CHECK (policy_rate_take_n (rp, r5, 1, "ann", 500, 2) == 0);
    S_CHECK (policy_rate_take (rp, r5, 1, "ann", 999) == AAAX_ELIMIT);
    /*  the three of t=0 have left the window, the two of t=500 not */
    S_CHECK (policy_rate_take_n (rp, r5, 1, "ann", 1000, 3) == 0);
    S_CHECK (policy_rate_take (rp, r5, 1, "ann", 1000) == AAAX_ELIMIT);
    for (int64_t t = 0; t < 10; t++)
        S_CHECK (policy_rate_take_n (rp, rbig, 1, "ann", t, 100) == 0);
    S_CHECK (policy_rate_take (rp, rbig, 1, "ann", 10) == AAAX_ELIMIT);
    S_CHECK (policy_rate_take_n (rp, rbig, 1, "ann", 1000, 100) == 0);
    S_CHECK (policy_rate_take (rp, rbig, 1, "ann", 1000) == AAAX_ELIMIT);
    S_CHECK (policy_rate_take (rp, rbig, 1, "ann", 1001) == 0);
    policy_destroy (&rp);
    policy_destroy (&policy);
    if (verbose)
        zsys_info ("policy_test: %s", failures ? "FAILED" : "OK");
    return failures ? 1 : 0;
}
