/*  policy_lex.h — a small Lua tokenizer for finding where things are
    written in a Lua data file (policy, configuration, app manifest) without
    running it: names, numbers, short and long strings, short and long
    comments, punctuation. The text comes from outside (any bytes): every
    loop advances the position or stops, so a scan is linear in the length,
    and nothing reads past it. Used by policy_lines.c and app_manifest.c. */

#ifndef POLICY_LEX_H_INCLUDED
#define POLICY_LEX_H_INCLUDED

#include <stddef.h>

typedef enum {
    POLICY_T_EOF = 0, /* end of text, or a long string or comment left open */
    POLICY_T_NAME,    /* a name or a keyword */
    POLICY_T_NUMBER,
    POLICY_T_STRING, /* short or long */
    POLICY_T_OP      /* punctuation; op says which */
} policy_tok_type_t;

enum {
    POLICY_OP_ASSIGN = '=',
    POLICY_OP_EQ = 256,
    POLICY_OP_CMP,
    POLICY_OP_DOTS
};

typedef struct {
    policy_tok_type_t type;
    int op;     /* POLICY_T_OP: the character, or OP_* */
    int line;   /* where the token starts */
    int quoted; /* POLICY_T_STRING: a short string ("..." or '...') */
    const char
        *text; /* POLICY_T_NAME, POLICY_T_STRING (without quotes): the bytes */
    size_t len;
} policy_tok_t;

typedef struct {
    const char *src;
    size_t len;
    size_t pos;
    int line;
} policy_lex_t;

/*  The next token of lx in *tok (POLICY_T_EOF at the end, or inside a
    long string or comment left open). */
void policy_lex_next (policy_lex_t *lx, policy_tok_t *tok);

/*  tok is the name (or keyword) name. */
int policy_tok_is_name (const policy_tok_t *tok, const char *name);
/*  tok is the punctuation op (a character or POLICY_OP_*). */
int policy_tok_is_op (const policy_tok_t *tok, int op);
/*  +1 for what opens a nesting level (( [ { function do if repeat), -1 for
    what closes one () ] } end until), else 0. */
int policy_tok_nesting (const policy_tok_t *tok);
/*  tok is a Lua keyword. */
int policy_tok_is_keyword (const policy_tok_t *tok);
/*  Skips a table constructor's element that starts with first, up to and
    including its end: a ',' or ';' (1) or the constructor's '}' (0); -1
    when the text ends or a bracket closes that the element did not open. */
int policy_lex_skip_element (policy_lex_t *lx, const policy_tok_t *first);

#endif
