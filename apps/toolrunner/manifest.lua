-- toolrunner: an agent-style app that asks the action gate before every
-- tool it runs. The policy decides; these are what it may ask for.
return {
  name = "toolrunner",
  version = "1.0.0",
  permissions = {
    "tool.*:*",          -- any tool, any target (asked as tool.NAME)
    "fs.write:notes/*",  -- the "note" tool writes notes/N.txt ...
    "fs.read:notes/*",   -- ... "read" reads one back ...
    "fs.list:*",         -- ... and "notes" lists them
  },
  channels = {},         -- requests come to its mailbox @toolrunner
  depends = {},
}
