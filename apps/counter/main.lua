-- counter: a counter kept in the app's key-value space under "count", so
-- that it survives a crash, a restart of the app and of the kernel.
--
--   aaax send counter '{"op": "incr"}' --wait 5000        -> {"count": 1}
--   aaax send counter '{"op": "incr", "by": 5}' --wait 5000 -> {"count": 6}
--   aaax send counter '{"op": "get"}' --wait 5000         -> {"count": 6}
--   aaax send counter '{"op": "reset"}' --wait 5000       -> {"count": 0}

local function count ()
  return aaax.kv.get("count") or 0
end

local ops = {}

function ops.get (req)
  return { count = count() }
end

function ops.incr (req)
  local by = req.by or 1
  if math.type(by) ~= "integer" then
    return { error = "by must be an integer" }
  end
  local n = count() + by
  local ok, err = aaax.kv.put("count", n)
  if not ok then
    return { error = err }   -- e.g. "429 kv quota of 64 KiB reached"
  end
  return { count = n }
end

function ops.reset (req)
  aaax.kv.del("count")
  return { count = 0 }
end

return {
  message = function (msg)
    local req = msg.data
    local op = type(req) == "table" and ops[req.op]
    if not op then
      -- A bad request gets an answer; raising here would crash the app
      -- and bring the same message back again.
      aaax.reply(msg, { error = 'expected {"op": "incr" | "get" | "reset"}' })
      return
    end
    aaax.reply(msg, op(req))
  end,
}
