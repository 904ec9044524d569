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

/*  Runs the policy file at path in a hal_luadata state and reads the list it
    returns. Errors as policy_from_lua, plus those of hal_luadata_run_file. */
int policy_load_file (const char *path, policy_t **out, char *err,
                      size_t errlen);

#endif
