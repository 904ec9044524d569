-- counter: a counter that survives restarts (it lives in aaax.kv).
return {
  name = "counter",
  version = "1.0.0",
  permissions = {},    -- its own key-value space needs no permission
  channels = {},       -- it only reads its mailbox @counter
  depends = {},
  limits = {           -- optional: within the kernel's ceilings
    memory_kb = 1024,  -- its Lua state may hold 1 MiB (default 4 MiB)
    kv_kb = 64,        -- and its key-value space 64 KiB
  },
}
