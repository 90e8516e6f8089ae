-- The cluster test of JETSTREAM.md: three nats-servers in one cluster on
-- 127.0.0.1, an R3 stream, three flume processes A, B, C each preferring
-- another server. A and B append concurrently in random batches; the
-- stream's leader server is killed with SIGKILL 2 s in and C 3 s in, both
-- restarted 3 s later. Then every node, and a node D replaying the stream
-- from empty, holds the same log and views; every returned seq holds its
-- value; batches are contiguous; an appender's seqs grow in call order;
-- nothing is stored twice. Every step is bounded; only processes started
-- here are killed.
local flume = require "flume"
local H = require "helpers.db"
local N = require "helpers.nats"

local missing = N.missing()
if missing then
  describe("a remote log on a cluster", function()
    N.cannot_run(missing, it, pending)
  end)
  return
end

local tool = (os.getenv("FLUME_BUILD_DIR") or "build") .. "/spec/tool_nats"

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

describe("a remote log on a three-server cluster", function()
  local servers, tmp, children = nil, nil, {}

  setup(function()
    tmp = H.tmpdir()
    math.randomseed(os.time())
    servers = N.cluster(tmp)
  end)

  teardown(function()
    for _, pid in pairs(children) do
      if N.alive(pid) then os.execute("kill -9 " .. pid) end
    end
    for _, s in ipairs(servers or {}) do
      if s.pid then N.stop(s) end
    end
    H.rm(tmp)
  end)

  -- The servers' URLs, server i first.
  local function urls(i)
    local list = {}
    for k = 0, 2 do list[#list + 1] = servers[(i - 1 + k) % 3 + 1].url end
    return table.concat(list, ",")
  end

  local function opts(stream, node, i)
    return { codec = "msgpack", remote = { urls = urls(i), stream = stream,
      node = node, timeout = 30, replicas = 3 } }
  end

  local function start(node, i, stream, count, seed)
    local acks = tmp .. "/acks." .. node
    local p = io.popen(H.lua_command("spec/helpers/remote_child.lua",
      tmp .. "/" .. node, urls(i), stream, node, count, seed, acks, 3) ..
      " >>" .. tmp .. "/child." .. node .. " 2>&1 & echo $!")
    children[node] = tonumber(p:read("l"))
    p:close()
    return acks
  end

  local function kill(node)
    os.execute("kill -9 " .. children[node])
    N.wait(10, node .. " to exit",
      function() return not N.alive(children[node]) end)
  end

  local function counts(db)
    local t = {}
    for key, n in db.per_node:read{} do t[key] = n end
    return t
  end

  it("keeps one log through a killed leader and a killed node", function()
    local stream = N.stream("cluster")
    local count = H.sanitized() and 1000 or 10000
    local seed = os.time() % 100000
    print(("\nseed %d, %d values per appender"):format(seed, count))
    -- The stream, once the cluster has elected its JetStream leader.
    local last_err
    N.wait(60, "the cluster to create the stream", function()
      local ok, db = pcall(flume.open, tmp .. "/P", opts(stream, "P", 1))
      if ok then db:close() else last_err = db end
      return ok
    end)
    local acks = {}
    start("C", 3, stream, 0, 0)
    acks.A = start("A", 1, stream, count, seed)
    acks.B = start("B", 2, stream, count, seed + 1)

    flume.sleep(2)
    local leader = sh(H.q(tool) .. " " .. H.q(urls(1)) .. " leader " ..
      stream):match("s%d")
    assert(leader, "no stream leader")
    local victim = servers[tonumber(leader:sub(2))]
    N.stop(victim)
    flume.sleep(1)
    kill("C")
    flume.sleep(3)
    N.restart(victim)
    start("C", 3, stream, 0, 0)

    local ok, err = pcall(N.wait, 240, "A and B to finish", function()
      return not N.alive(children.A) and not N.alive(children.B)
    end)
    assert(ok, err)
    for _, node in ipairs { "A", "B" } do
      local f = io.open(tmp .. "/child." .. node)
      local text = f and f:read("a") or ""
      if f then f:close() end
      local done = io.open(acks[node] .. ".done")
      assert(done and not text:find("Sanitizer"), node .. " failed: " .. text)
      done:close()
    end
    kill("C")

    local dbs = {}
    for i, node in ipairs { "A", "B", "C", "D" } do
      dbs[node] = flume.open(tmp .. "/" .. node, opts(stream, node, i % 3 + 1))
    end
    for _, db in pairs(dbs) do
      db:use("sum", { version = 1, initial = 0,
        reduce = function(acc, v) return acc + v.i end })
      db:use("per_node", { version = 1,
        map = function(v) return v.node, 1 end,
        reduce = function(acc, n) return (acc or 0) + n end })
      db:use("by_node", { version = 1, map = function(v) return v.node end })
    end
    -- A marker appended on A: a fresh read on any node sees it, so that
    -- node holds the whole stream up to it (D replays it all first).
    local marker = dbs.A:append({ node = "marker", i = 0 })
    for node, db in pairs(dbs) do
      assert.equal(1, db.per_node:get("marker",
        { fresh = true, timeout = 60 }), node)
      assert.same({ node = "marker", i = 0 }, db:get(marker))
    end
    local logs = {}
    for node, db in pairs(dbs) do
      local log = {}
      for seq, v in db:stream{} do log[seq + 1] = v end
      logs[node] = log
    end
    local log = logs.A
    assert.equal(2 * count + 1, #log)
    for _, node in ipairs { "B", "C", "D" } do
      assert.same(log, logs[node], node .. "'s log differs from A's")
      assert.equal(dbs.A.sum:get(), dbs[node].sum:get())
      assert.same(counts(dbs.A), counts(dbs[node]))
      assert.same(dbs.A.by_node:get("B"), dbs[node].by_node:get("B"))
    end
    assert.equal(count, dbs.D.per_node:get("A"))
    assert.equal(count, dbs.D.per_node:get("B"))

    local seen = {}
    for seq, v in ipairs(log) do
      local key = v.node .. ":" .. v.i
      assert.is_nil(seen[key], key .. " stored twice")
      seen[key] = seq - 1
    end
    for _, node in ipairs { "A", "B" } do
      local last, n = -1, 0
      for line in io.lines(acks[node]) do
        local b, i, k, seq = line:match("^(b?) ?(%d+) ?(%d*) (%d+)$")
        i, seq = tonumber(i), tonumber(seq)
        k = b == "b" and tonumber(k) or 1
        for j = 0, k - 1 do
          assert.same({ node = node, i = i + j }, log[seq - k + 2 + j])
        end
        assert.is_true(seq > last)
        last, n = seq, n + k
      end
      assert.equal(count, n)
    end
    -- read-your-writes across nodes: a read on another node with `after`
    -- the seq an append returned on A waits until that node has ingested
    -- and indexed it
    local again = dbs.A:append({ node = "marker", i = 0 })
    for _, node in ipairs { "B", "C", "D" } do
      assert.equal(2, dbs[node].per_node:get("marker",
        { after = again, timeout = 60 }))
    end
    -- and with `fresh`, which needs no seq: what the stream's leader
    -- holds when the read begins
    dbs.A:append({ node = "marker", i = 0 })
    for _, node in ipairs { "B", "C", "D" } do
      assert.equal(3, dbs[node].per_node:get("marker",
        { fresh = true, timeout = 60 }), node)
    end
    for _, db in pairs(dbs) do db:close() end
  end)
end)
