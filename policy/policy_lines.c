/*  policy_lines.c — the line of each rule in a Lua policy or configuration
    text, found by a small tokenizer (no Lua runs). Every loop advances the
    position or stops, so a scan is linear in the text; nothing recurses. */

#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "policy_lex.h"
#include "policy_lines.h"

typedef struct {
    int *lines;
    size_t size;
    size_t cap;
} s_lines_t;

static int
s_lines_push (s_lines_t *self, int line)
{
    if (self->size == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        int *lines = (int *) realloc (self->lines, cap * sizeof (int));
        if (!lines)
            return AAAX_ENOMEM;
        self->lines = lines;
        self->cap = cap;
    }
    self->lines[self->size++] = line;
    return 0;
}

/*  Just after a constructor's '{': records the line of each element, which
    must all be positional. Stops after the closing '}'. Returns 0,
    AAAX_ENOENT (a keyed element, or no proper end) or AAAX_ENOMEM. */
static int
s_list (policy_lex_t *lx, s_lines_t *out)
{
    for (;;) {
        policy_tok_t tok;
        policy_lex_next (lx, &tok);
        if (policy_tok_is_op (&tok, '}'))
            return 0; /* empty, or after a trailing separator */
        if (tok.type == POLICY_T_EOF || policy_tok_is_op (&tok, '['))
            return AAAX_ENOENT; /* "[key] = value" */
        if (tok.type == POLICY_T_NAME && !policy_tok_is_keyword (&tok)) {
            policy_lex_t peek = *lx;
            policy_tok_t after;
            policy_lex_next (&peek, &after);
            if (policy_tok_is_op (&after, POLICY_OP_ASSIGN))
                return AAAX_ENOENT; /* "name = value" */
        }
        if (s_lines_push (out, tok.line))
            return AAAX_ENOMEM;
        int more = policy_lex_skip_element (lx, &tok);
        if (more < 0)
            return AAAX_ENOENT;
        if (more == 0)
            return 0;
    }
}

/*  Just after the returned constructor's '{' (configuration mode): finds
    the last element keyed "policy" (name = or ["policy"] =) and, when its
    value is a constructor followed by the element's end, its lines. */
static int
s_config (policy_lex_t *lx, s_lines_t *out)
{
    int found = 0; /* the last "policy" seen was a list we could follow */
    for (;;) {
        policy_tok_t tok;
        policy_lex_next (lx, &tok);
        if (policy_tok_is_op (&tok, '}'))
            break;
        if (tok.type == POLICY_T_EOF)
            return AAAX_ENOENT;
        //  Is this element "policy = ..." or "['policy'] = ..."?
        policy_lex_t peek = *lx;
        policy_tok_t a, b, c;
        int is_policy = 0;
        if (policy_tok_is_name (&tok, "policy")) {
            policy_lex_next (&peek, &a);
            is_policy = policy_tok_is_op (&a, POLICY_OP_ASSIGN);
        } else if (policy_tok_is_op (&tok, '[')) {
            policy_lex_next (&peek, &a);
            policy_lex_next (&peek, &b);
            policy_lex_next (&peek, &c);
            is_policy = a.type == POLICY_T_STRING && a.len == 6
                        && memcmp (a.text, "policy", 6) == 0
                        && policy_tok_is_op (&b, ']')
                        && policy_tok_is_op (&c, POLICY_OP_ASSIGN);
        }
        int more;
        if (is_policy) {
            *lx = peek; /* after the '=' */
            policy_tok_t value;
            policy_lex_next (lx, &value);
            found = 0;
            out->size = 0;
            if (policy_tok_is_op (&value, '{')) {
                //  A list that is not plain stops the scan: where it
                //  failed, the nesting is no longer known.
                int rc = s_list (lx, out);
                if (rc)
                    return rc;
                policy_tok_t end;
                policy_lex_next (lx, &end);
                found = policy_tok_is_op (&end, ',')
                        || policy_tok_is_op (&end, ';')
                        || policy_tok_is_op (&end, '}');
                value = end; /* continue from the element's end */
            }
            more = policy_lex_skip_element (lx, &value);
        } else
            more = policy_lex_skip_element (lx, &tok);
        if (more < 0)
            return AAAX_ENOENT;
        if (more == 0)
            break;
    }
    return found ? 0 : AAAX_ENOENT;
}

int
policy_lines (const char *src, size_t len, policy_lines_mode_t mode,
              int **lines_p, size_t *n_p)
{
    if (!src || !lines_p || !n_p)
        return AAAX_ENOENT;
    policy_lex_t lx = { src, len, 0, 1 };
    policy_tok_t tok;
    //  The chunk's own "return": the first one outside every block and
    //  bracket (it must be the chunk's last statement).
    long depth = 0;
    for (policy_lex_next (&lx, &tok); tok.type != POLICY_T_EOF;
         policy_lex_next (&lx, &tok)) {
        if (depth == 0 && policy_tok_is_name (&tok, "return"))
            break;
        depth += policy_tok_nesting (&tok);
    }
    if (tok.type == POLICY_T_EOF)
        return AAAX_ENOENT;
    policy_lex_next (&lx, &tok);
    if (!policy_tok_is_op (&tok, '{'))
        return AAAX_ENOENT;
    s_lines_t out = { NULL, 0, 0 };
    int rc =
        mode == POLICY_LINES_CONFIG ? s_config (&lx, &out) : s_list (&lx, &out);
    if (rc == 0 && mode == POLICY_LINES_FILE) {
        //  "return { ... }" must end the chunk (not "return {...} .. x").
        policy_lex_next (&lx, &tok);
        if (policy_tok_is_op (&tok, ';'))
            policy_lex_next (&lx, &tok);
        if (tok.type != POLICY_T_EOF || lx.pos < lx.len)
            rc = AAAX_ENOENT;
    }
    if (rc) {
        free (out.lines);
        return rc;
    }
    if (out.size == 0) {
        free (out.lines);
        out.lines = NULL;
    }
    *lines_p = out.lines;
    *n_p = out.size;
    return 0;
}
