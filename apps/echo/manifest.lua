-- echo: who the app is and what it asks for (docs/LUA.md, "The manifest").
return {
  name = "echo",       -- its system id: others send to its mailbox @echo
  version = "1.0.0",
  permissions = {},    -- replying to a mailbox needs no permission
  channels = {},       -- no channel beyond its own mailbox
  depends = {},
}
