-- The log on a NATS JetStream stream (runtime/remote/): several flume
-- processes append to one stream and every node stores the same values at
-- the same seqs. One nats-server on 127.0.0.1 (a port the system picks),
-- R1 streams, every step bounded in time, and only the processes started
-- here are killed. The three-server cluster test is stage 2.
local flume = require "flume"
local H = require "helpers.db"
local N = require "helpers.nats"

local missing = N.missing()
if missing then
  describe("a remote log", function()
    N.cannot_run(missing, it, pending)
    if not require("flume.core").remote then
      it("fails clearly when this build has no remote logs", function()
        local dir = H.tmpdir()
        H.raises(function()
          flume.open(dir .. "/db", { remote = { urls = "nats://127.0.0.1:1",
            stream = "S" } })
        end, "ENOTSUP.*libnats")
        H.rm(dir)
      end)
    end
  end)
  return
end

local tool = (os.getenv("FLUME_BUILD_DIR") or "build") .. "/spec/tool_nats"

local function remote(server, stream, node, extra)
  local r = { urls = server.url, stream = stream, node = node, timeout = 10,
    replicas = 1 }
  for k, v in pairs(extra or {}) do r[k] = v end
  return { codec = "msgpack", remote = r }
end

-- Waits until db has stored `n` values.
local function caught_up(db, n)
  N.wait(30, "the node to store " .. n .. " values",
    function() return db.since >= n - 1 end)
  assert.equal(n - 1, db.since)
end

local function values(db)
  local all = {}
  for seq, v in db:stream{} do all[#all + 1] = { seq = seq, v = v } end
  return all
end

describe("a remote log", function()
  local server, tmp

  setup(function()
    tmp = H.tmpdir()
    server = N.start(tmp .. "/nats")
  end)

  teardown(function()
    N.stop(server)
    H.rm(tmp)
  end)

  it("gives two processes appending concurrently the same log", function()
    local stream = N.stream("two")
    local count = H.sanitized() and 300 or 3000
    local seeds = { A = os.time() % 100000, B = os.time() % 100000 + 1 }
    print(("\nseeds A=%d B=%d"):format(seeds.A, seeds.B))
    -- The stream and its genesis first, so the children race on appends
    -- only.
    local first = flume.open(tmp .. "/c", remote(server, stream, "C"))
    first:close()
    local pids, acks = {}, {}
    for _, node in ipairs { "A", "B" } do
      acks[node] = tmp .. "/acks." .. node
      local p = io.popen(H.lua_command("spec/helpers/remote_child.lua",
        tmp .. "/" .. node, server.url, stream, node, count, seeds[node],
        acks[node]) .. " >" .. tmp .. "/child." .. node .. " 2>&1 & echo $!")
      pids[node] = tonumber(p:read("l"))
      p:close()
    end
    local ok, err = pcall(N.wait, 120, "both appenders", function()
      for _, node in ipairs { "A", "B" } do
        if N.alive(pids[node]) then return false end
      end
      return true
    end)
    for _, node in ipairs { "A", "B" } do
      if N.alive(pids[node]) then os.execute("kill -9 " .. pids[node]) end
    end
    assert(ok, err)
    for _, node in ipairs { "A", "B" } do
      local log = io.open(tmp .. "/child." .. node)
      local text = log and log:read("a") or ""
      if log then log:close() end
      local f = io.open(acks[node] .. ".done")
      if not f or text:find("Sanitizer") then
        error(node .. " failed: " .. text)
      end
      f:close()
    end

    -- Each node, reopened, catches up with the stream; then they agree.
    local total = 2 * count
    local dbs = {}
    for _, node in ipairs { "A", "B", "C" } do
      dbs[node] = flume.open(tmp .. "/" .. node, remote(server, stream, node))
      dbs[node]:use("sum", { version = 1, initial = 0,
        reduce = function(acc, v) return acc + v.i end })
      dbs[node]:use("by_node", { version = 1,
        map = function(v) return v.node end })
      caught_up(dbs[node], total)
    end
    local log = values(dbs.A)
    assert.same(log, values(dbs.B))
    assert.same(log, values(dbs.C))
    assert.equal(total, #log)
    -- Exactly once: every value of every appender, once.
    local seen = {}
    for _, e in ipairs(log) do
      local key = e.v.node .. ":" .. e.v.i
      assert.is_nil(seen[key], key .. " stored twice")
      seen[key] = e.seq
    end
    for _, node in ipairs { "A", "B" } do
      local last = -1
      for line in io.lines(acks[node]) do
        local b, i, k, seq = line:match("^(b?) ?(%d+) ?(%d*) (%d+)$")
        i, seq = tonumber(i), tonumber(seq)
        k = b == "b" and tonumber(k) or 1
        -- Every returned seq holds its value; a batch is contiguous; an
        -- appender's seqs grow in the order of its calls.
        for j = 0, k - 1 do
          local at = log[seq - k + 2 + j]
          assert.same({ node = node, i = i + j }, at.v)
        end
        assert.is_true(seq > last)
        last = seq
      end
    end
    local sum = count * (count - 1)
    for _, node in ipairs { "A", "B", "C" } do
      assert.equal(sum, dbs[node].sum:get())
      assert.equal(count, #dbs[node].by_node:get("A"))
      assert.same(dbs.A.by_node:get("B"), dbs[node].by_node:get("B"))
    end
    for _, db in pairs(dbs) do db:close() end
  end)

  it("resumes a reopened node from its stream position", function()
    local stream = N.stream("resume")
    local a = flume.open(tmp .. "/ra", remote(server, stream, "A"))
    for i = 1, 10 do a:append({ node = "A", i = i }) end
    a:close()
    local b = flume.open(tmp .. "/rb", remote(server, stream, "B"))
    caught_up(b, 10)
    for i = 1, 10 do assert.equal(9 + i, b:append({ node = "B", i = i })) end
    b:close()
    a = flume.open(tmp .. "/ra", remote(server, stream, "A"))
    assert.equal(9, a.since) -- what it stored before, nothing more yet
    caught_up(a, 20)
    flume.sleep(0.2) -- nothing past the stream's end arrives
    assert.equal(19, a.since)
    for seq = 0, 19 do
      assert.same({ node = seq < 10 and "A" or "B", i = seq % 10 + 1 },
        a:get(seq))
    end
    -- Its own appends go on from the stream's end.
    assert.equal(20, a:append({ node = "A", i = 11 }))
    a:close()
  end)

  it("keeps what a node killed with SIGKILL had acknowledged", function()
    local stream = N.stream("kill")
    local seed = os.time() % 100000
    print(("\nseed %d"):format(seed))
    local acks = tmp .. "/acks.k"
    local p = io.popen(H.lua_command("spec/helpers/remote_child.lua",
      tmp .. "/k", server.url, stream, "K", 1000000, seed, acks) ..
      " >" .. tmp .. "/child.k 2>&1 & echo $!")
    local pid = tonumber(p:read("l"))
    p:close()
    local ok, err = pcall(N.wait, 60, "300 acknowledged appends", function()
      local n = 0
      local f = io.open(acks)
      if f then
        for _ in f:lines() do n = n + 1 end
        f:close()
      end
      return n >= 300 or not N.alive(pid)
    end)
    os.execute("kill -9 " .. pid)
    N.wait(10, "the killed node to exit",
      function() return not N.alive(pid) end)
    assert(ok, err)
    -- Its folder, reopened by a new process (this one), stores the rest of
    -- the stream: every acknowledged value at its seq, nothing twice.
    local db
    N.wait(10, "the killed node's lock", function()
      local opened, d = pcall(flume.open, tmp .. "/k",
        remote(server, stream, "K"))
      if opened then db = d end
      return opened
    end)
    -- Its own append returns once stored here, after all that came
    -- before it in the stream: then the folder holds the whole stream.
    -- The node's chain goes on under the new process: no ELOCKED.
    local at = db:append({ node = "K", i = -1 })
    local log, seen = values(db), {}
    assert.equal(#log - 1, at)
    for _, e in ipairs(log) do
      assert.is_nil(seen[e.v.i], e.v.i .. " stored twice")
      seen[e.v.i] = e.seq
    end
    local f = io.open(acks)
    for line in f:lines() do
      local b, i, k, seq = line:match("^(b?) ?(%d+) ?(%d*) (%d+)$")
      if seq then -- a whole line
        i, seq = tonumber(i), tonumber(seq)
        k = b == "b" and tonumber(k) or 1
        assert.equal(seq - k + 1, seen[i])
      end
    end
    f:close()
    db:close()
  end)

  it("never skips a lost delivery: it follows the stream again", function()
    local stream = N.stream("gap")
    local a = flume.open(tmp .. "/ga", remote(server, stream, "A"))
    local b = flume.open(tmp .. "/gb", remote(server, stream, "B"))
    assert.equal(0, a:append({ i = 0 }))
    caught_up(b, 1)
    -- B loses the delivery of A's second envelope from now.
    local before = b._c:remote_withhold(2)
    for i = 1, 5 do assert.equal(i, a:append({ i = i })) end
    caught_up(b, 6)
    for seq = 0, 5 do assert.same({ i = seq }, b:get(seq)) end
    assert.is_true(b._c:remote_withhold(0) > before)
    -- B's own appends go on after it.
    assert.equal(6, b:append({ i = 6 }))
    a:close()
    b:close()
  end)

  it("reads fresh on node B right after node A's append returns", function()
    local stream = N.stream("fresh")
    local b = flume.open(tmp .. "/fb", remote(server, stream, "B"))
    b:use("count", { version = 1, initial = 0,
      reduce = function(n) return n + 1 end })
    b:use("by_i", { version = 1, map = function(v) return v.i end })
    assert.equal(0, b.count:get())
    for round = 1, 3 do
      -- Node A, another process, appends while this one (node B) does not
      -- run its loop: B has stored none of it when A's appends return.
      local acks = tmp .. "/facks." .. round
      local out, code = H.run_lua("spec/helpers/remote_child.lua",
        tmp .. "/fa", server.url, stream, "A", 5, round, acks)
      assert.equal(0, code, out)
      assert.equal(5 * round - 5, b.count:get{ wait = false })
      assert.equal(5 * round, b.count:get{ fresh = true })
      local got = {}
      for _, _, v in b.by_i:read{ fresh = true, gte = 0 } do
        got[#got + 1] = v.i
      end
      assert.equal(5 * round, #got)
    end
    -- The async form, and with after.
    local n
    b.count:get({ fresh = true, after = 0 }, function(err, v)
      assert.is_nil(err)
      n = v
    end)
    flume.run()
    assert.equal(15, n)
    -- Where the stream and node B stand, sync and async.
    local st = b:remote_status()
    assert.equal(stream, st.stream)
    assert.equal("B", st.node)
    assert.is_true(st.last_seq >= 3)
    assert.equal(st.last_seq, st.stored)
    assert.equal(0, st.lag)
    assert.equal(b.since, st.since)
    assert.is_true(st.deny_delete and st.deny_purge)
    assert.equal("table", type(st.peers))
    local async
    b:remote_status(function(err, s) async = err or s end)
    flume.run()
    assert.equal(st.last_seq, async.last_seq)
    H.raises(function() b.count:get{ fresh = true, wait = false } end,
      "EINVAL.*contradict")
    H.raises(function() b.count:get{ fresh = 1 } end, "EINVAL.*boolean")
    b:close()
  end)

  it("lets a close finish the appends made before it", function()
    local stream = N.stream("drain")
    local db = flume.open(tmp .. "/da", remote(server, stream, "A"))
    assert.equal(0, db:append({ i = 0 }))
    local n, seqs = 200, {}
    for i = 1, n do
      db:append({ i = i }, function(err, seq)
        assert.is_nil(err)
        seqs[i] = seq
      end)
    end
    db:append({ { i = -1 }, { i = -2 } }, { batch = true }, function(err, seq)
      assert.is_nil(err)
      seqs.batch = seq
    end)
    db:close()
    for i = 1, n do assert.equal(i, seqs[i]) end
    assert.equal(n + 2, seqs.batch)
    db = flume.open(tmp .. "/da", remote(server, stream, "A"))
    assert.equal(n + 2, db.since)
    for i = 0, n do assert.same({ i = i }, db:get(i)) end
    assert.same({ i = -2 }, db:get(n + 2))
    db:close()
  end)

  it("reads fresh on a local log as a plain gated read", function()
    local db = flume.open(tmp .. "/flocal", { codec = "msgpack" })
    db:use("count", { version = 1, initial = 0,
      reduce = function(n) return n + 1 end })
    for i = 1, 3 do db:append({ i = i }) end
    assert.equal(3, db.count:get{ fresh = true })
    H.raises(function() db:remote_status() end, "EINVAL.*not a remote")
    db:close()
  end)

  it("starts a new node from a backup of another, with a new node id",
    function()
    local stream = N.stream("backup")
    local a = flume.open(tmp .. "/ba", remote(server, stream, "A"))
    for i = 0, 4 do a:append({ i = i }) end
    assert(os.execute("mkdir -p " .. H.q(tmp .. "/bcopy")))
    a:backup(tmp .. "/bcopy")
    for i = 5, 9 do a:append({ i = i }) end
    -- The copy under a new id stores the rest of the stream and appends.
    local c = flume.open(tmp .. "/bcopy", remote(server, stream, "C"))
    assert.equal(10, c:append({ i = 10 }))
    for seq = 0, 10 do assert.same({ i = seq }, c:get(seq)) end
    c:close()
    -- A copy that keeps A's id is a second process of node A.
    assert(os.execute("mkdir -p " .. H.q(tmp .. "/bcopy2")))
    a:backup(tmp .. "/bcopy2")
    local a2 = flume.open(tmp .. "/bcopy2", remote(server, stream))
    assert.equal(11, a:append({ i = 11 }))
    H.raises(function() a2:append({ i = 12 }) end, "ELOCKED.*node A")
    a2:close()
    a:close()
  end)

  it("has `flume remote init` and `flume remote status`", function()
    local stream = N.stream("cli")
    local function flume_cli(args)
      local p = io.popen(H.flume_command(args) .. " 2>&1")
      local out = p:read("a")
      local ok = p:close()
      return out, ok
    end
    local out, ok = flume_cli { "remote", "init", "--urls", server.url,
      "--stream", stream, "--replicas", "1" }
    assert(ok, out)
    assert.truthy(out:find("stream " .. stream .. ": 1 replicas, 1 messages",
      1, true), out)
    local a = flume.open(tmp .. "/sa", remote(server, stream, "A"))
    for i = 1, 3 do a:append({ i = i }) end
    a:close()
    out, ok = flume_cli { "remote", "status", tmp .. "/sa", "--json" }
    assert(ok, out)
    local st = require("flume.json").decode(out)
    assert.equal(stream, st.stream)
    assert.equal("A", st.node)
    assert.equal(4, st.last) -- the genesis and three envelopes
    assert.equal(4, st.stored)
    assert.equal(0, st.lag)
    assert.equal(2, st.since)
    out, ok = flume_cli { "remote", "status", tmp .. "/sa" }
    assert(ok, out)
    assert.truthy(out:find("node A of stream " .. stream, 1, true), out)
    -- A local log is not a node.
    local l = flume.open(tmp .. "/slocal")
    l:close()
    out, ok = flume_cli { "remote", "status", tmp .. "/slocal" }
    assert.falsy(ok)
    assert.truthy(out:find("local log", 1, true), out)
  end)

  it("refuses a stream that allows deleting messages", function()
    local stream = N.stream("deletes")
    local rc = os.execute(H.q(tool) .. " " .. H.q(server.url) ..
      " allow-delete " .. stream .. " " .. H.q("flume." .. stream .. ".>"))
    assert.is_true(rc)
    H.raises(function()
      flume.open(tmp .. "/del", remote(server, stream, "A"))
    end, "EINVAL.*allows deleting")
  end)

  it("refuses a second process with the same node id", function()
    local stream = N.stream("twice")
    local a = flume.open(tmp .. "/la", remote(server, stream, "A"))
    local a2 = flume.open(tmp .. "/la2", remote(server, stream, "A"))
    assert.equal(0, a:append({ i = 1 }))
    H.raises(function() a2:append({ i = 2 }) end, "ELOCKED.*node A")
    -- The refused one stays refused; the first goes on.
    H.raises(function() a2:append({ i = 3 }) end, "ELOCKED")
    assert.equal(1, a:append({ i = 4 }))
    a:close()
    a2:close()
  end)

  it("refuses to open a node's folder as a local log", function()
    local stream = N.stream("local")
    local db = flume.open(tmp .. "/loc", remote(server, stream, "A"))
    assert.equal(0, db:append({ i = 1 }))
    db:close()
    H.raises(function() flume.open(tmp .. "/loc", { codec = "msgpack" }) end,
      "EINVAL.*caches the remote stream " .. stream)
    -- Reading it is fine: it is a cache of the stream.
    local r = flume.open(tmp .. "/loc", { readonly = true })
    assert.same({ i = 1 }, r:get(0))
    r:close()
  end)

  it("refuses a folder that caches another stream", function()
    local s1, s2 = N.stream("one"), N.stream("two")
    local db = flume.open(tmp .. "/other", remote(server, s1, "A"))
    db:close()
    H.raises(function()
      flume.open(tmp .. "/other", remote(server, s2, "A"))
    end, "EINVAL.*caches the stream")
  end)
end)

describe("a remote log without its server", function()
  it("fails to open when no server answers", function()
    local dir = H.tmpdir()
    -- A port nobody listens on: a server started and stopped here.
    local s = N.start(dir .. "/nats")
    N.stop(s)
    H.raises(function()
      flume.open(dir .. "/db", { remote = { urls = s.url, stream = "S",
        timeout = 1 } })
    end, "ETIMEDOUT.*cannot reach")
    H.rm(dir)
  end)

  it("fails an append cleanly when no server answers in time", function()
    local dir = H.tmpdir()
    local s = N.start(dir .. "/nats")
    local db = flume.open(dir .. "/db", remote(s, N.stream("lost"), "A",
      { timeout = 1 }))
    assert.equal(0, db:append({ i = 1 }))
    N.stop(s)
    local t0 = os.time()
    H.raises(function() db:append({ i = 2 }) end, "ETIMEDOUT.*no quorum")
    assert.is_true(os.time() - t0 < 10)
    -- What was stored stays readable.
    assert.same({ i = 1 }, db:get(0))
    db:close()
    H.rm(dir)
  end)

  it("fails a fresh read when no server answers in time", function()
    local dir = H.tmpdir()
    local s = N.start(dir .. "/nats")
    local db = flume.open(dir .. "/db", remote(s, N.stream("nofresh"), "A",
      { timeout = 1 }))
    db:use("count", { version = 1, initial = 0,
      reduce = function(n) return n + 1 end })
    assert.equal(0, db:append({ i = 1 }))
    assert.equal(1, db.count:get{ fresh = true })
    N.stop(s)
    local t0 = os.time()
    H.raises(function() db.count:get{ fresh = true } end,
      "ETIMEDOUT.*no quorum")
    assert.is_true(os.time() - t0 < 10)
    -- Plain reads go on (stale, local).
    assert.equal(1, db.count:get())
    db:close()
    H.rm(dir)
  end)

  it("closes with appends the stream never took: they fail ECLOSED",
    function()
    local dir = H.tmpdir()
    local s = N.start(dir .. "/nats")
    local db = flume.open(dir .. "/db", remote(s, N.stream("gone"), "A",
      { timeout = 30 }))
    assert.equal(0, db:append({ i = 1 }))
    N.stop(s)
    local got
    db:append({ i = 2 }, function(err) got = err end)
    local t0 = os.time()
    db:close() -- its drain gives up after a while, not after the timeout
    assert.is_true(os.time() - t0 < 20)
    assert.matches("ECLOSED", got)
    H.rm(dir)
  end)
end)
