-- The remote log's rows (runtime/remote/): a three-server nats-server
-- cluster on 127.0.0.1 (spec/helpers/nats.lua starts it, in WORK), an R3
-- stream, and then
--   remote_append_async  N single appends with callbacks from one process,
--                        then flume.run(): values/s through the stream
--                        (envelopes of the group commit, one in flight)
--   remote_replay        a new node replaying those N values from the
--                        stream into its folder: values/s
-- printed as "<row> <values per second>". Run by bench/harness.lua with
-- the build's lua.sh:  remote.lua WORK N
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/?.lua;" .. here .. "/../spec/?.lua;" ..
  package.path
local flume = require "flume"
local data = require "data"
local N = require "helpers.nats"

local work, n = arg[1], assert(tonumber(arg[2]))
local clock = flume.core.hrtime

local why = N.missing()
if why then
  io.stderr:write("bench: remote rows skipped: ", why, "\n")
  print("skipped 1")
  return
end

local servers = N.cluster(work .. "/nats")
local ok, err = pcall(function()
  local urls = {}
  for i, s in ipairs(servers) do urls[i] = s.url end
  local stream = N.stream("bench")
  local function open(node)
    return flume.open(work .. "/" .. node, { codec = "msgpack", remote = {
      urls = urls, stream = stream, node = node, replicas = 3,
      timeout = 60 } })
  end
  local db
  N.wait(60, "the cluster to create the stream", function()
    local opened, d = pcall(open, "A")
    if opened then db = d end
    return opened
  end)

  local values = data.values(0, n)
  local acked, failed = 0, nil
  local function done(e)
    if e then failed = failed or e end
    acked = acked + 1
  end
  collectgarbage()
  local t0 = clock()
  for i = 1, n do db:append(values[i], done) end
  flume.run()
  local t1 = clock()
  assert(not failed, failed)
  assert(acked == n and db.since == n - 1, "not every append was stored")
  print(string.format("remote_append_async %.0f", n / (t1 - t0)))
  db:close()

  -- A new node: from its open (connected, subscribed) to its last value.
  local t2 = clock()
  local d = open("D")
  local t3
  local stop = d:on_since(function(since)
    if since >= n - 1 and not t3 then t3 = clock() end
  end)
  N.wait(300, "the replay", function() return t3 ~= nil end)
  stop()
  print(string.format("remote_replay %.0f", n / (t3 - t2)))
  d:close()
end)
for _, s in ipairs(servers) do N.stop(s) end
assert(ok, err)
