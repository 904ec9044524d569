-- bench.bsink: subscribes to bench.b and handles every message by doing
-- nothing (broadcast messages are not acknowledged).
return {
  start = function ()
    assert(aaax.subscribe("bench.b"))
  end,
  message = function (msg) end,
}
