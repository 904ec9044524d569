-- watchdog: the heartbeat lists the docked systems every second; when a
-- system of one heartbeat is missing from the next, the watchdog writes
--
--   {"alert": "system-gone", "system": ID, "ts": SECONDS}
--
-- on the broadcast channel "alerts" and logs it at warn.
--
--   aaax tail alerts

-- Systems not worth an alert (Lua patterns): the aaax CLI's own short
-- sessions, cli-HOST-PID. Empty this list to hear about every system.
local IGNORE = { "^cli%-" }

local present = nil  -- the ids of the last heartbeat (a set); nil at first

local function ignored (id)
  for _, pattern in ipairs(IGNORE) do
    if id:find(pattern) then
      return true
    end
  end
  return false
end

return {
  start = function ()
    -- Raising here fails the load with this error.
    assert(aaax.subscribe("heartbeat"))
  end,

  message = function (msg)
    if msg.chan ~= "heartbeat" or type(msg.data) ~= "table" then
      return
    end
    local now = {}
    for _, id in ipairs(msg.data.systems or {}) do
      now[id] = true
    end
    if present then
      local gone = {}
      for id in pairs(present) do
        if not now[id] and not ignored(id) then
          gone[#gone + 1] = id
        end
      end
      table.sort(gone)
      for _, id in ipairs(gone) do
        aaax.log("warn", "system gone: " .. id)
        aaax.write("alerts", { alert = "system-gone", system = id,
                               ts = aaax.now() })
      end
    end
    present = now
  end,
}
