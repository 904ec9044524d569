-- toolrunner: runs tools for whoever asks, each one only if the action
-- gate allows it. A request is a mailbox message
--
--   {"tool": "note", "target": "todo", "args": {"text": "buy milk"}}
--
-- (add "wait": true to wait for an operator when the policy says "ask").
-- The gate is asked for the action "tool.NAME" on the target; the reply is
--
--   {"tool", "target", "decision", "reason", "audit_id", ...}
--
-- plus what the tool made when it ran. Built-in tools: note (writes
-- args.text to notes/N.txt), read (returns notes/N.txt, N = args.n) and
-- notes (lists them); any other tool name is only asked about, so that an
-- agent learns whether it may run it itself.

local stats = { requests = 0, allow = 0, deny = 0, ask = 0 }

local tools = {}

function tools.note (target, args)
  -- The note's number, kept across restarts. No call between the get and
  -- the put waits on the kernel, so no other handler runs in between.
  local n = (aaax.kv.get("notes") or 0) + 1
  local ok, err = aaax.kv.put("notes", n)
  if not ok then
    return { error = err }
  end
  local path = string.format("notes/%d.txt", n)
  -- aaax.fs.write asks the gate itself, as fs.write on the path.
  ok, err = aaax.fs.write(path, tostring(args.text or target))
  if not ok then
    return { error = err }
  end
  return { path = path }
end

function tools.read (target, args)
  local path = string.format("notes/%d.txt", math.tointeger(args.n) or 0)
  local text, err = aaax.fs.read(path)
  if not text then
    return { error = err }
  end
  return { path = path, text = text }
end

function tools.notes (target, args)
  local list, err = aaax.fs.list("notes")
  if not list then
    return { error = err }
  end
  return { notes = list }
end

local function handle (msg)
  local req = msg.data
  if type(req) ~= "table" or type(req.tool) ~= "string" then
    return { error = 'expected {"tool": NAME, "target": TARGET, "args": {...}}' }
  end
  local tool, target = req.tool, tostring(req.target or "")
  local args = type(req.args) == "table" and req.args or {}
  stats.requests = stats.requests + 1

  local d, err = aaax.gate("tool." .. tool, target, args,
                           req.wait and { wait = true } or nil)
  if not d then
    aaax.log("warn", "the gate did not answer: " .. err)
    return { tool = tool, target = target, error = err }
  end
  stats[d.decision] = (stats[d.decision] or 0) + 1
  aaax.log("info", string.format("tool.%s %s: %s (%s, audit %s)", tool,
                                 target, d.decision, d.reason or "",
                                 d.audit_id or "-"))
  local answer = { tool = tool, target = target, decision = d.decision,
                   reason = d.reason, audit_id = d.audit_id }
  if d.decision == "allow" and tools[tool] then
    for k, v in pairs(tools[tool](target, args)) do
      answer[k] = v
    end
  end
  return answer
end

return {
  start = function ()
    -- A status line on the kernel's log ("app toolrunner: ...") every 30 s.
    aaax.timer.every(30000, function ()
      aaax.log("info", string.format(
        "status: %d requests since start, %d allowed, %d denied, %d ask",
        stats.requests, stats.allow, stats.deny, stats.ask))
    end)
  end,

  message = function (msg)
    aaax.reply(msg, handle(msg))
  end,
}
