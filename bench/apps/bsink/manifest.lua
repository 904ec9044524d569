-- bench.bsink: the broadcast variant of aaax_bench's app-msgs workload
-- (bench/README.md). It reads the bench's broadcast channel bench.b, which
-- the bench's kernel configuration declares and its policy lets bench.*
-- systems read.
return {
  name = "bench.bsink",
  version = "1.0.0",
  permissions = { "chan.read:bench.b" },
  channels = { "bench.b" },
  depends = {},
}
