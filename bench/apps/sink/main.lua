-- bench.sink: handles every message by doing nothing. What aaax_bench
-- measures is the app host's cost per message (decode, the Lua call, the
-- ACK), not the handler's.
return {
  message = function (msg) end,
}
