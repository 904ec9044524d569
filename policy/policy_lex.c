/*  policy_lex.c — the Lua tokenizer of policy_lex.h. */

#include <stddef.h>
#include <string.h>

#include "policy_lex.h"

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
s_newline (policy_lex_t *lx)
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
s_long_level (const policy_lex_t *lx)
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
s_skip_long (policy_lex_t *lx, long level)
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
s_skip_space (policy_lex_t *lx)
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

void
policy_lex_next (policy_lex_t *lx, policy_tok_t *tok)
{
    memset (tok, 0, sizeof (*tok));
    if (s_skip_space (lx) || lx->pos >= lx->len) {
        tok->type = POLICY_T_EOF;
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
        tok->type = POLICY_T_NAME;
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
        tok->type = POLICY_T_NUMBER;
    } else if (c == '"' || c == '\'') {
        //  A short string; a line break inside one is a Lua error, but
        //  after "\" or within "\z" it is part of the string: count all.
        lx->pos++;
        tok->type = POLICY_T_STRING;
        tok->quoted = 1;
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
            tok->type = POLICY_T_EOF;
            return;
        }
        tok->type = POLICY_T_STRING;
        tok->len = lx->pos - (size_t) level - 2 - (size_t) (tok->text - s);
    } else {
        tok->type = POLICY_T_OP;
        tok->op = (unsigned char) c;
        lx->pos++;
        if (c == '=' && next == '=') {
            tok->op = POLICY_OP_EQ;
            lx->pos++;
        } else if ((c == '<' || c == '>' || c == '~') && next == '=') {
            tok->op = POLICY_OP_CMP;
            lx->pos++;
        } else if (c == '.' && next == '.') {
            tok->op = POLICY_OP_DOTS;
            lx->pos++;
            if (lx->pos < lx->len && s[lx->pos] == '.')
                lx->pos++;
        }
    }
}

int
policy_tok_is_name (const policy_tok_t *tok, const char *name)
{
    size_t len = strlen (name);
    return tok->type == POLICY_T_NAME && tok->len == len
           && memcmp (tok->text, name, len) == 0;
}

int
policy_tok_is_op (const policy_tok_t *tok, int op)
{
    return tok->type == POLICY_T_OP && tok->op == op;
}

/*  How a token changes the nesting: +1 for ( [ { function do if repeat,
    -1 for ) ] } end until, else 0. ("while ... do", "for ... do" open at
    their "do"; "then", "else", "elseif" stay inside the "if".) */
int
policy_tok_nesting (const policy_tok_t *tok)
{
    if (tok->type == POLICY_T_OP)
        return (tok->op == '(' || tok->op == '[' || tok->op == '{')   ? 1
               : (tok->op == ')' || tok->op == ']' || tok->op == '}') ? -1
                                                                      : 0;
    if (tok->type == POLICY_T_NAME) {
        if (policy_tok_is_name (tok, "function")
            || policy_tok_is_name (tok, "do") || policy_tok_is_name (tok, "if")
            || policy_tok_is_name (tok, "repeat"))
            return 1;
        if (policy_tok_is_name (tok, "end")
            || policy_tok_is_name (tok, "until"))
            return -1;
    }
    return 0;
}

int
policy_tok_is_keyword (const policy_tok_t *tok)
{
    static const char *const keywords[] = {
        "and",      "break",  "do",   "else", "elseif", "end",  "false", "for",
        "function", "goto",   "if",   "in",   "local",  "nil",  "not",   "or",
        "repeat",   "return", "then", "true", "until",  "while"
    };
    for (size_t i = 0; i < sizeof (keywords) / sizeof (keywords[0]); i++)
        if (policy_tok_is_name (tok, keywords[i]))
            return 1;
    return 0;
}

/*  Skips the rest of a constructor element whose first token is first, up
    to and including its end: a ',' or ';' (returns 1) or the constructor's
    '}' (returns 0). Returns -1 when the text ends or a bracket closes that
    was not opened inside the element. */
int
policy_lex_skip_element (policy_lex_t *lx, const policy_tok_t *first)
{
    policy_tok_t tok = *first;
    long depth = 0;
    for (;;) {
        if (tok.type == POLICY_T_EOF)
            return -1;
        if (depth == 0
            && (policy_tok_is_op (&tok, ',') || policy_tok_is_op (&tok, ';')))
            return 1;
        if (depth == 0 && policy_tok_is_op (&tok, '}'))
            return 0;
        depth += policy_tok_nesting (&tok);
        if (depth < 0)
            return -1;
        policy_lex_next (lx, &tok);
    }
}
