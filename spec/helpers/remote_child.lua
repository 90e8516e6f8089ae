-- A flume process appending to a remote log, for remote_spec.lua:
--   remote_child.lua DIR URLS STREAM NODE COUNT SEED ACKS [REPLICAS]
-- appends COUNT values { node, i } in random batches of 1 to 20 (a third
-- of them `batch = true`, the others single async appends), and writes a
-- line per acknowledged append to ACKS: "i seq" (a single value) or
-- "b i k last" (a batch of k values from i). Writes ACKS.done at the end
-- (or ACKS.err with the error). COUNT 0: only follows the stream (with a
-- reduce, a group and an index view) until killed.
local flume = require "flume"

local dir, url, stream, node, count, seed, acks, replicas = ...
count, seed = tonumber(count), tonumber(seed)
replicas = tonumber(replicas) or 1

local db = flume.open(dir, { codec = "msgpack", remote = { urls = url,
  stream = stream, node = node, timeout = 30, replicas = replicas } })
if count == 0 then
  db:use("sum", { version = 1, initial = 0,
    reduce = function(acc, v) return acc + v.i end })
  db:use("per_node", { version = 1,
    map = function(v) return v.node, 1 end,
    reduce = function(acc, n) return (acc or 0) + n end })
  db:use("by_node", { version = 1, map = function(v) return v.node end })
  while true do flume.sleep(1) end
end
local out = assert(io.open(acks, "w"))
out:setvbuf("line")
math.randomseed(seed)
local i, failed = 0, nil
while i < count do
  local k = math.min(math.random(1, 20), count - i)
  if math.random(3) == 1 then
    local vals, first = {}, i
    for j = 1, k do vals[j] = { node = node, i = first + j - 1 } end
    db:append(vals, { batch = true }, function(err, last)
      if err then failed = failed or err return end
      out:write(string.format("b %d %d %d\n", first, k, last))
    end)
  else
    for j = 0, k - 1 do
      local n = i + j
      db:append({ node = node, i = n }, function(err, seq)
        if err then failed = failed or err return end
        out:write(string.format("%d %d\n", n, seq))
      end)
    end
  end
  i = i + k
  -- A few hundred in flight at most.
  if i % 200 < k then flume.run() end
end
flume.run()
out:close()
db:close()
local f = assert(io.open(acks .. (failed and ".err" or ".done"), "w"))
f:write(tostring(failed or "done"), "\n")
f:close()
