/*  policy_lines.c — the line of each rule in a Lua policy or configuration
    text, found by a small tokenizer (no Lua runs). Every loop advances the
    position or stops, so a scan is linear in the text; nothing recurses. */

#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "policy_lines.h"

typedef enum {
    T_EOF = 0, /* end of text, or a long string or comment left open */
    T_NAME,    /* a name or a keyword */
    T_NUMBER,
    T_STRING, /* short or long */
    T_OP      /* punctuation; op says which */
} s_type_t;

enum { OP_ASSIGN = '=', OP_EQ = 256, OP_CMP, OP_DOTS };

typedef struct {
    s_type_t type;
    int op;           /* T_OP: the character, or OP_* */
    int line;         /* where the token starts */
    const char *text; /* T_NAME, T_STRING (without quotes): the bytes */
    size_t len;
} s_token_t;

typedef struct {
    const char *src;
    size_t len;
    size_t pos;
    int line;
} s_lexer_t;

static int
s_is_newline (char c)
{
    return c == '\n' || c == '\r';
}

static int
s_is_alpha (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int
s_is_digit (char c)
{
    return c >= '0' && c <= '9';
}

/*  Steps over one line break: "\n", "\r", "\r\n" or "\n\r", as Lua. */
static void
s_newline (s_lexer_t *lx)
{
    char c = lx->src[lx->pos++];
    if (lx->pos < lx->len && s_is_newline (lx->src[lx->pos])
        && lx->src[lx->pos] != c)
        lx->pos++;
    if (lx->line < 0x7fffffff)
        lx->line++;
}

/*  At '[': the level of a long bracket "[" "="* "[" (0 for "[["), or -1
    when it is not one. Does not move. */
static long
s_long_level (const s_lexer_t *lx)
{
    size_t p = lx->pos + 1;
    while (p < lx->len && lx->src[p] == '=')
        p++;
    if (p < lx->len && lx->src[p] == '[')
        return (long) (p - lx->pos - 1);
    return -1;
}

/*  At a long bracket of the given level: steps over it and the text up to
    the matching close, counting lines. Returns 0, or -1 when the text ends
    first (then the position is at the end). */
static int
s_skip_long (s_lexer_t *lx, long level)
{
    lx->pos += (size_t) level + 2;
    while (lx->pos < lx->len) {
        char c = lx->src[lx->pos];
        if (s_is_newline (c))
            s_newline (lx);
        else if (c == ']') {
            size_t p = lx->pos + 1;
            while (p < lx->len && lx->src[p] == '=')
                p++;
            if (p < lx->len && lx->src[p] == ']'
                && (long) (p - lx->pos - 1) == level) {
                lx->pos = p + 1;
                return 0;
            }
            lx->pos++;
        } else
            lx->pos++;
    }
    return -1;
}

/*  Skips white space and comments. Returns 0, or -1 when a long comment
    is left open. */
static int
s_skip_space (s_lexer_t *lx)
{
    while (lx->pos < lx->len) {
        char c = lx->src[lx->pos];
        if (s_is_newline (c))
            s_newline (lx);
        else if (c == ' ' || c == '\t' || c == '\v' || c == '\f')
            lx->pos++;
        else if (c == '-' && lx->pos + 1 < lx->len
                 && lx->src[lx->pos + 1] == '-') {
            lx->pos += 2;
            long level = -1;
            if (lx->pos < lx->len && lx->src[lx->pos] == '[')
                level = s_long_level (lx);
            if (level >= 0) {
                if (s_skip_long (lx, level))
                    return -1;
            } else
                while (lx->pos < lx->len && !s_is_newline (lx->src[lx->pos]))
                    lx->pos++;
        } else
            break;
    }
    return 0;
}

static void
s_next (s_lexer_t *lx, s_token_t *tok)
{
    memset (tok, 0, sizeof (*tok));
    if (s_skip_space (lx) || lx->pos >= lx->len) {
        tok->type = T_EOF;
        tok->line = lx->line;
        return;
    }
    tok->line = lx->line;
    const char *s = lx->src;
    size_t start = lx->pos;
    char c = s[start];
    char next = start + 1 < lx->len ? s[start + 1] : '\0';
    if (s_is_alpha (c)) {
        while (lx->pos < lx->len
               && (s_is_alpha (s[lx->pos]) || s_is_digit (s[lx->pos])))
            lx->pos++;
        tok->type = T_NAME;
        tok->text = s + start;
        tok->len = lx->pos - start;
    } else if (s_is_digit (c) || (c == '.' && s_is_digit (next))) {
        int hex = c == '0' && (next == 'x' || next == 'X');
        if (hex)
            lx->pos += 2;
        while (lx->pos < lx->len) {
            char d = s[lx->pos];
            int expo = hex ? (d == 'p' || d == 'P') : (d == 'e' || d == 'E');
            if (expo && lx->pos + 1 < lx->len
                && (s[lx->pos + 1] == '+' || s[lx->pos + 1] == '-'))
                lx->pos += 2;
            else if (s_is_alpha (d) || s_is_digit (d) || d == '.')
                lx->pos++;
            else
                break;
        }
        tok->type = T_NUMBER;
    } else if (c == '"' || c == '\'') {
        //  A short string; a line break inside one is a Lua error, but
        //  after "\" or within "\z" it is part of the string: count all.
        lx->pos++;
        tok->type = T_STRING;
        tok->text = s + lx->pos;
        while (lx->pos < lx->len && s[lx->pos] != c) {
            if (s[lx->pos] == '\\' && lx->pos + 1 < lx->len) {
                lx->pos++;
                if (s_is_newline (s[lx->pos]))
                    s_newline (lx);
                else
                    lx->pos++;
            } else if (s_is_newline (s[lx->pos]))
                s_newline (lx);
            else
                lx->pos++;
        }
        tok->len = (size_t) (s + lx->pos - tok->text);
        if (lx->pos < lx->len)
            lx->pos++; /* the closing quote */
    } else if (c == '[' && s_long_level (lx) >= 0) {
        long level = s_long_level (lx);
        tok->text = s + start + (size_t) level + 2;
        if (s_skip_long (lx, level)) {
            tok->type = T_EOF;
            return;
        }
        tok->type = T_STRING;
        tok->len = lx->pos - (size_t) level - 2 - (size_t) (tok->text - s);
    } else {
        tok->type = T_OP;
        tok->op = (unsigned char) c;
        lx->pos++;
        if (c == '=' && next == '=') {
            tok->op = OP_EQ;
            lx->pos++;
        } else if ((c == '<' || c == '>' || c == '~') && next == '=') {
            tok->op = OP_CMP;
            lx->pos++;
        } else if (c == '.' && next == '.') {
            tok->op = OP_DOTS;
            lx->pos++;
            if (lx->pos < lx->len && s[lx->pos] == '.')
                lx->pos++;
        }
    }
}

static int
s_is_name (const s_token_t *tok, const char *name)
{
    size_t len = strlen (name);
    return tok->type == T_NAME && tok->len == len
           && memcmp (tok->text, name, len) == 0;
}

static int
s_is_op (const s_token_t *tok, int op)
{
    return tok->type == T_OP && tok->op == op;
}

/*  How a token changes the nesting: +1 for ( [ { function do if repeat,
    -1 for ) ] } end until, else 0. ("while ... do", "for ... do" open at
    their "do"; "then", "else", "elseif" stay inside the "if".) */
static int
s_nesting (const s_token_t *tok)
{
    if (tok->type == T_OP)
        return (tok->op == '(' || tok->op == '[' || tok->op == '{')   ? 1
               : (tok->op == ')' || tok->op == ']' || tok->op == '}') ? -1
                                                                      : 0;
    if (tok->type == T_NAME) {
        if (s_is_name (tok, "function") || s_is_name (tok, "do")
            || s_is_name (tok, "if") || s_is_name (tok, "repeat"))
            return 1;
        if (s_is_name (tok, "end") || s_is_name (tok, "until"))
            return -1;
    }
    return 0;
}

static int
s_is_keyword (const s_token_t *tok)
{
    static const char *const keywords[] = {
        "and",      "break",  "do",   "else", "elseif", "end",  "false", "for",
        "function", "goto",   "if",   "in",   "local",  "nil",  "not",   "or",
        "repeat",   "return", "then", "true", "until",  "while"
    };
    for (size_t i = 0; i < sizeof (keywords) / sizeof (keywords[0]); i++)
        if (s_is_name (tok, keywords[i]))
            return 1;
    return 0;
}

/*  Skips the rest of a constructor element whose first token is first, up
    to and including its end: a ',' or ';' (returns 1) or the constructor's
    '}' (returns 0). Returns -1 when the text ends or a bracket closes that
    was not opened inside the element. */
static int
s_skip_element (s_lexer_t *lx, const s_token_t *first)
{
    s_token_t tok = *first;
    long depth = 0;
    for (;;) {
        if (tok.type == T_EOF)
            return -1;
        if (depth == 0 && (s_is_op (&tok, ',') || s_is_op (&tok, ';')))
            return 1;
        if (depth == 0 && s_is_op (&tok, '}'))
            return 0;
        depth += s_nesting (&tok);
        if (depth < 0)
            return -1;
        s_next (lx, &tok);
    }
}

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
s_list (s_lexer_t *lx, s_lines_t *out)
{
    for (;;) {
        s_token_t tok;
        s_next (lx, &tok);
        if (s_is_op (&tok, '}'))
            return 0; /* empty, or after a trailing separator */
        if (tok.type == T_EOF || s_is_op (&tok, '['))
            return AAAX_ENOENT; /* "[key] = value" */
        if (tok.type == T_NAME && !s_is_keyword (&tok)) {
            s_lexer_t peek = *lx;
            s_token_t after;
            s_next (&peek, &after);
            if (s_is_op (&after, OP_ASSIGN))
                return AAAX_ENOENT; /* "name = value" */
        }
        if (s_lines_push (out, tok.line))
            return AAAX_ENOMEM;
        int more = s_skip_element (lx, &tok);
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
s_config (s_lexer_t *lx, s_lines_t *out)
{
    int found = 0; /* the last "policy" seen was a list we could follow */
    for (;;) {
        s_token_t tok;
        s_next (lx, &tok);
        if (s_is_op (&tok, '}'))
            break;
        if (tok.type == T_EOF)
            return AAAX_ENOENT;
        //  Is this element "policy = ..." or "['policy'] = ..."?
        s_lexer_t peek = *lx;
        s_token_t a, b, c;
        int is_policy = 0;
        if (s_is_name (&tok, "policy")) {
            s_next (&peek, &a);
            is_policy = s_is_op (&a, OP_ASSIGN);
        } else if (s_is_op (&tok, '[')) {
            s_next (&peek, &a);
            s_next (&peek, &b);
            s_next (&peek, &c);
            is_policy = a.type == T_STRING && a.len == 6
                        && memcmp (a.text, "policy", 6) == 0
                        && s_is_op (&b, ']') && s_is_op (&c, OP_ASSIGN);
        }
        int more;
        if (is_policy) {
            *lx = peek; /* after the '=' */
            s_token_t value;
            s_next (lx, &value);
            found = 0;
            out->size = 0;
            if (s_is_op (&value, '{')) {
                //  A list that is not plain stops the scan: where it
                //  failed, the nesting is no longer known.
                int rc = s_list (lx, out);
                if (rc)
                    return rc;
                s_token_t end;
                s_next (lx, &end);
                found = s_is_op (&end, ',') || s_is_op (&end, ';')
                        || s_is_op (&end, '}');
                value = end; /* continue from the element's end */
            }
            more = s_skip_element (lx, &value);
        } else
            more = s_skip_element (lx, &tok);
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
    s_lexer_t lx = { src, len, 0, 1 };
    s_token_t tok;
    //  The chunk's own "return": the first one outside every block and
    //  bracket (it must be the chunk's last statement).
    long depth = 0;
    for (s_next (&lx, &tok); tok.type != T_EOF; s_next (&lx, &tok)) {
        if (depth == 0 && s_is_name (&tok, "return"))
            break;
        depth += s_nesting (&tok);
    }
    if (tok.type == T_EOF)
        return AAAX_ENOENT;
    s_next (&lx, &tok);
    if (!s_is_op (&tok, '{'))
        return AAAX_ENOENT;
    s_lines_t out = { NULL, 0, 0 };
    int rc =
        mode == POLICY_LINES_CONFIG ? s_config (&lx, &out) : s_list (&lx, &out);
    if (rc == 0 && mode == POLICY_LINES_FILE) {
        //  "return { ... }" must end the chunk (not "return {...} .. x").
        s_next (&lx, &tok);
        if (s_is_op (&tok, ';'))
            s_next (&lx, &tok);
        if (tok.type != T_EOF || lx.pos < lx.len)
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
