-- Crash safety: a writer killed with SIGKILL at any instant loses nothing it
-- acknowledged, and leaves a log without gaps or damaged values.
local flume = require "flume"
local H = require "helpers.db"
local C = require "helpers.crash"

local function sleep(s) flume.sleep(s) end

local alive, reopen = C.alive, C.reopen

-- Starts a writer and returns its pid once it has acknowledged a first
-- value: a child slow to start (under sanitizers, on a loaded machine)
-- would otherwise be killed before it appends anything.
local function start_child(dir, ackpath, run, views)
  local p = io.popen(H.lua_command("spec/helpers/crash_child.lua", dir,
    ackpath, run, views) .. " >/dev/null 2>&1 & echo $!")
  local pid = tonumber(p:read("l"))
  p:close()
  for _ = 1, 12000 do
    local f = io.open(ackpath)
    local line = f and f:read("l")
    if f then f:close() end
    if line or not alive(pid) then return pid end
    sleep(0.005)
  end
  return pid
end

local read_acks = C.read_acks

local function intact(v)
  return type(v) == "table" and type(v.data) == "string" and
    #v.data == v.len and
    v.data == string.rep(string.char(65 + v.i % 26), v.len)
end

describe("a writer killed with SIGKILL", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  it("loses no acknowledged value and leaves no gap", function()
    local db_dir, ackpath = dir .. "/db", dir .. "/acks"
    math.randomseed(os.time())
    local total_acks, kills = 0, 0
    for run = 1, 12 do
      local pid = start_child(db_dir, ackpath .. "." .. run, run)
      sleep(0.08 + math.random() * 0.4)
      os.execute("kill -9 " .. pid)
      kills = kills + 1
      while alive(pid) do sleep(0.01) end

      local acks = read_acks(ackpath, run)
      local db = reopen(db_dir)
      local since = db.since
      for _, a in ipairs(acks) do
        assert(a.seq <= since, "acknowledged seq " .. a.seq ..
          " is past the reopened log's since " .. since)
        local v = db:get(a.seq)
        assert(intact(v) and v.run == a.run and v.i == a.i,
          "acknowledged seq " .. a.seq .. " does not hold what was appended")
      end
      local expect = 0
      for seq, v in db:stream() do
        assert.equal(expect, seq)
        assert(intact(v), "damaged value at seq " .. seq)
        expect = expect + 1
      end
      assert.equal(since + 1, expect)
      db:close()
      total_acks = #acks
    end
    assert.equal(12, kills)
    assert.is_true(total_acks > 0, "the child never got to append")
    print(string.format("\n%d acknowledged values checked after %d kills", total_acks, kills))
  end)
end)

describe("a writer with views killed with SIGKILL", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  it("leaves every view equal to a rebuild from scratch over the log", function()
    local db_dir, ackpath = dir .. "/db", dir .. "/acks"
    math.randomseed(os.time() + 1)
    for run = 1, 8 do
      local pid = start_child(db_dir, ackpath .. "." .. run, run, "views")
      sleep(0.15 + math.random() * 0.4)
      os.execute("kill -9 " .. pid)
      while alive(pid) do sleep(0.01) end

      local db = reopen(db_dir)
      db:use("types", "views-lua/examples/count_by_type.lua")
      db:use("total", "views-lua/examples/total_amount.lua")
      db:use("authors", "views-lua/examples/by_author.lua")
      -- what the views must hold: computed here from the log
      local types, sum, count, authors = {}, 0, 0, {}
      for seq, v in db:stream() do
        assert(intact(v), "damaged value at seq " .. seq)
        types[v.type] = (types[v.type] or 0) + 1
        sum, count = sum + v.amount, count + 1
        local list = authors[v.author] or {}
        list[#list + 1] = seq
        authors[v.author] = list
      end
      local got_types = {}
      for t, n in db.types:read() do got_types[t] = n end
      assert.same(types, got_types)
      assert.same({ sum = sum, count = count }, db.total:get())
      local got_authors = {}
      for a, seq in db.authors:read() do
        local list = got_authors[a] or {}
        list[#list + 1] = seq
        got_authors[a] = list
      end
      assert.same(authors, got_authors)
      db:close()
    end
  end)
end)
