-- watchdog: watches the heartbeat and raises an alert on "alerts" when a
-- docked system disappears.
return {
  name = "watchdog",
  version = "1.0.0",
  permissions = {
    "chan.read:heartbeat",  -- what it reads ...
    "chan.write:alerts",    -- ... and what it writes
  },
  channels = { "heartbeat", "alerts" },  -- the rights to ask for at dock
  depends = {},
}
