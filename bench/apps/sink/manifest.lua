-- bench.sink: the app of aaax_bench's app-msgs workload (bench/README.md).
-- Producers SEND to its mailbox @bench.sink; the runtime ACKs each message
-- when message() returns.
return {
  name = "bench.sink",
  version = "1.0.0",
  permissions = {},  -- its own mailbox needs none
  channels = {},
  depends = {},
}
