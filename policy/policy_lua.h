/*  policy_lua.h — reads policy rules from Lua values (the `policy` list of a
    configuration file, or a policy file that returns that list). */

#ifndef POLICY_LUA_H_INCLUDED
#define POLICY_LUA_H_INCLUDED

#include <stddef.h>
#include <lua.h>
#include "policy.h"

/*  Reads the list of rule tables at stack index idx into a new policy
    (*out, caller owns). source names where the list came from in messages
    ("policy.lua", "config.lua: policy"). Returns 0, or AAAX_EINVAL with a
    message naming the rule and field in err, and then *out is untouched. */
int policy_from_lua (lua_State *L, int idx, const char *source, policy_t **out,
                     char *err, size_t errlen);

/*  As policy_from_lua, for a list written in file whose rule i (1-based)
    starts on line lines[i - 1] (see policy_lines.h): each rule's source is
    "file:line" and messages start "file:line: rule i: ". When lines is NULL
    or nlines is not the number of rules, as policy_from_lua with file as
    the source ("file: rule i: "). */
int policy_from_lua_at (lua_State *L, int idx, const char *file,
                        const int *lines, size_t nlines, policy_t **out,
                        char *err, size_t errlen);

/*  Runs text (len bytes), the contents of a policy file, in a hal_luadata
    state and reads the list it returns, naming each rule "file:line" where
    the list is a literal table. Errors as policy_from_lua_at, plus those of
    hal_luadata_run_string ("file:line: message"). */
int policy_load_text (const char *text, size_t len, const char *file,
                      policy_t **out, char *err, size_t errlen);

/*  Reads the policy file at path (hal_luadata_read_file) and loads it
    (policy_load_text). */
int policy_load_file (const char *path, policy_t **out, char *err,
                      size_t errlen);

#endif
