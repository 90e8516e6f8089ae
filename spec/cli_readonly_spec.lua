-- The `flume` command's reading commands beside a running writer: get,
-- cat, cat --live, status, backup and verify open the database read-only
-- (flume.open(dir, { readonly = true }) and its storage, tables, backup
-- and verify methods), so they run while another process holds the folder
-- open for writing and appends, and they give right answers: every value
-- at its seq, no gap, a consistent snapshot.
local H = require "helpers.db"
local C = require "helpers.cli"
local cjson = require "cjson"

local q = H.q
local COUNT = H.root .. "/views-lua/examples/count_by_type.lua"

-- The writer: appends { i = seq + 1, type = ... } in batches (the first
-- of arg[4] values, the others of 50) until the file arg[3] exists (or
-- 400,000 values), with a view attached; says "writing" once its first
-- batch is in, and its last since at the end.
local WRITER = [[
local flume = require "flume"
local db = flume.open(arg[1], { codec = "msgpack" })
db:use("types", arg[2])
local types = { "post", "like", "follow" }
local n, size = db.since + 1, tonumber(arg[4])
while n < 400000 do
  local batch = {}
  for j = 1, size do
    batch[j] = { i = n + j, type = types[(n + j) % 3 + 1] }
  end
  db:append(batch, { batch = true })
  if n == 0 then print("writing") io.stdout:flush() end
  n, size = n + size, 50
  local stop = io.open(arg[3])
  if stop then stop:close() break end
end
db.types:ready()
print(db.since)
db:close()
]]

local read, lines = C.read, C.lines

--- Runs the command (stdin empty); returns stdout, stderr and the exit
-- code.
local flume = C.flume

--- Checks that `out` (cat's JSON Lines) holds seqs first, first + 1, ...
-- each with its right value; returns how many and the last seq.
local function check_cat(out, first)
  local n, last = 0, first - 1
  for _, e in ipairs(lines(out)) do
    assert(e.seq == last + 1, ("seq %d after %d"):format(e.seq, last))
    assert(e.value.i == e.seq + 1, ("seq %d holds i = %s"):format(e.seq,
      tostring(e.value.i)))
    n, last = n + 1, e.seq
  end
  return n, last
end

describe("the flume command beside a running writer", function()
  local tmp, dir, stop, writer
  before_each(function()
    tmp = H.tmpdir()
    C.set_tmp(tmp)
    dir = tmp .. "/db"
    stop = tmp .. "/stop"
    H.write(tmp .. "/writer.lua", WRITER)
  end)

  --- Starts the writer, its first batch of `first` values (default 50).
  local function start_writer(first)
    writer = io.popen(H.lua_command(tmp .. "/writer.lua", dir, COUNT, stop,
      first or 50))
    assert.equal("writing", writer:read("l"))
  end

  --- Stops the writer; returns its last since.
  local function stop_writer()
    H.write(stop, "")
    local last = tonumber(writer:read("a"):match("(%d+)\n$"))
    assert(writer:close(), "the writer failed")
    writer = nil
    return last
  end

  after_each(function()
    if writer then stop_writer() end
    H.rm(tmp)
  end)

  --- The since the database has reached (a read beside the writer).
  local function since_now()
    local out, err, code = flume({ "get", dir, "-1" })
    assert(code == 0, err)
    return cjson.decode(out).i - 1
  end

  --- Waits until the writer has appended past `seq`.
  local function wait_past(seq)
    for _ = 1, 600 do
      if since_now() > seq then return end
      os.execute("sleep 0.05")
    end
    error("the writer did not get past seq " .. seq)
  end

  it("get reads any seq, and -1 the last one", function()
    start_writer()
    wait_past(200)
    for _, seq in ipairs { 0, 49, 50, 123, 200 } do
      local out, err, code = flume({ "get", dir, tostring(seq) })
      assert.equal(0, code, err)
      assert.equal(seq + 1, cjson.decode(out).i)
    end
    local a = since_now()
    wait_past(a + 100)
    assert.is_true(since_now() > a + 100) -- -1 follows the writer
    local _, err, code = flume({ "get", dir, "999999999" })
    assert.equal(1, code)
    assert.truthy(err:find("^flume: ENOTFOUND: .* %(it holds seqs 0 to %d+%)"),
      err)
  end)

  it("cat prints a consistent range, forwards and backwards", function()
    start_writer()
    wait_past(500)
    local out, err, code = flume({ "cat", dir })
    assert.equal(0, code, err)
    local n, last = check_cat(out, 0)
    assert.is_true(n >= 501, n)
    assert.equal(n - 1, last)
    out = flume({ "cat", dir, "--gte", "100", "--lt", "300" })
    assert.same({ 200, 299 }, { check_cat(out, 100) })
    out = flume({ "cat", dir, "--reverse", "--lte", "400", "--limit",
      "3", "--values" })
    assert.same({ { i = 401 }, { i = 400 }, { i = 399 } }, (function()
      local t = {}
      for k, v in ipairs(lines(out)) do t[k] = { i = v.i } end
      return t
    end)())
  end)

  it("cat --live follows the writer's appends until Ctrl-C", function()
    start_writer()
    local from = since_now()
    local outpath, pidpath = tmp .. "/live.out", tmp .. "/live.pid"
    local p = io.popen("echo $$ > " .. q(pidpath) .. "; exec " ..
      H.flume_command({ "cat", dir, "--live", "--gt", tostring(from) }) ..
      " > " .. q(outpath) .. " 2>&1")
    -- it goes on past what was there when it started: 2,000 more values
    local text
    for _ = 1, 1200 do
      text = read(outpath) or ""
      local _, count = text:gsub("\n", "")
      if count >= 2000 then break end
      os.execute("sleep 0.05")
    end
    os.execute("kill -INT $(cat " .. q(pidpath) .. ")")
    local _, _, status = p:close()
    assert.equal(130, status)
    text = read(outpath)
    text = text:sub(1, #text - #(text:match("[^\n]*$"))) -- whole lines
    local n = check_cat(text, from + 1)
    assert.is_true(n >= 2000, "the live cat printed " .. n .. " values")
  end)

  it("cat --live ends with 130 on Ctrl-C while it is busy printing", function()
    -- a Ctrl-C that came while values were printed (not while it waited
    -- for more) ended it with "flume: interrupted" and exit code 1; it
    -- ends as one that comes while it waits: 130 (as `flume --help` says
    -- of Ctrl-C), no message
    start_writer(100000)
    local outpath, pidpath = tmp .. "/live.out", tmp .. "/live.pid"
    local errpath, statuspath = tmp .. "/live.err", tmp .. "/live.status"
    -- a slow reader of its output keeps it busy printing (blocked in its
    -- writes), however fast it prints; it drains the rest at full speed
    -- once told (the file `drain`), not a sleep per line for minutes
    local drain = tmp .. "/drain"
    H.write(tmp .. "/reader.lua", [[
      local out, n = assert(io.open(arg[1], "w")), 0
      out:setvbuf("line")
      for line in io.lines() do
        out:write(line, "\n")
        n = n + 1
        local fast = io.open(arg[2])
        if fast then fast:close()
        elseif n % 20 == 0 then os.execute("sleep 0.01") end
      end
      out:close()
    ]])
    local p = io.popen("{ sh -c " .. q("echo $$ > " .. q(pidpath) ..
      "; exec " .. H.flume_command({ "cat", dir, "--live", "--values" }) ..
      " 2> " .. q(errpath)) .. "; echo $? > " .. q(statuspath) .. "; } | " ..
      H.lua_command(tmp .. "/reader.lua", outpath, drain))
    for _ = 1, 600 do -- a thousand of the 100,000 there: busy
      local _, count = (read(outpath) or ""):gsub("\n", "")
      if count >= 1000 then break end
      os.execute("sleep 0.01")
    end
    os.execute("kill -INT $(cat " .. q(pidpath) .. ")")
    H.write(drain, "")
    p:close()
    local text = read(outpath)
    local errs = read(errpath) or ""
    assert.falsy(errs:find("flume: interrupted"), errs)
    assert.equal("130", (read(statuspath) or ""):match("%d+"))
    local _, count = text:gsub("\n", "")
    assert.is_true(count < 100000, "the Ctrl-C came too late to tell")
  end)

  it("status shows the log, its tables and the view's record", function()
    start_writer()
    wait_past(300)
    local out, err, code = flume({ "status", dir, "--json" })
    assert.equal(0, code, err)
    local st = cjson.decode(out)
    assert.is_true(st.since >= 300, out)
    assert.equal(st.since + 1, st.entries)
    assert.equal("msgpack", st.codec)
    assert.equal(2, st.format)
    assert.is_true(st.size > 0 and st.used > 0 and st.log_size > 0, out)
    assert.equal(1, #st.views)
    local v = st.views[1]
    assert.same({ "types", "group", 1, false },
      { v.name, v.kind, v.version, v.attached })
    assert.is_true(v.since <= st.since and v.lag == st.since - v.since, out)
    out, err, code = flume({ "status", dir })
    assert.equal(0, code, err)
    assert.truthy(out:find("\nlog       since %d+ %(%d+ entries%)"), out)
    assert.truthy(out:find("\n  types +group +1 "), out)
  end)

  it("backup copies one consistent snapshot", function()
    start_writer()
    wait_past(300)
    local copy = tmp .. "/copy"
    local out, err, code = flume({ "backup", dir, copy })
    assert.equal(0, code, err)
    local since = tonumber(out:match("at since (%d+) "))
    assert.is_true(since >= 300, out)
    local last = stop_writer()
    assert.is_true(since <= last, out)
    -- the copy is a prefix of the log, whole, and its view is right
    out, err, code = flume({ "cat", copy })
    assert.equal(0, code, err)
    assert.same({ since + 1, since }, { check_cat(out, 0) })
    out, err, code = flume({ "verify", copy, "--view",
      "types=" .. COUNT })
    assert.equal(0, code, err)
    assert.truthy(out:find("\ntypes: ok %(group, 3 keys, since " .. since ..
      "%)"), out)
  end)

  it("verify reads and checks every stored entry", function()
    start_writer()
    wait_past(300)
    local out, err, code = flume({ "verify", dir })
    assert.equal(0, code, err)
    local entries, tables = out:match("^storage: ok %((%d+) entries in " ..
      "(%d+) tables%)\nviews not recomputed: another process has the " ..
      "database open for writing")
    assert.truthy(entries, out)
    -- the log (at least 301 values), meta and the view's table
    assert.equal("3", tables)
    assert.is_true(tonumber(entries) >= 301 + 3, out)
    local last = stop_writer()
    -- the writer was not disturbed: its whole log is there, in order
    out = flume({ "cat", dir })
    assert.same({ last + 1, last }, { check_cat(out, 0) })
  end)

  it("drop and shell say what to do instead, each its own", function()
    start_writer()
    local _, err, code = flume({ "drop", dir, "v" })
    assert.equal(1, code)
    assert.truthy(err:find("^flume: ELOCKED: .*drop: .*stop that writer"),
      err)
    assert.falsy(err:find("attached", 1, true), err)
    _, err, code = flume({ "shell", dir })
    assert.equal(1, code)
    assert.truthy(err:find("^flume: ELOCKED: .*shell: .*try flume shell " ..
      "%-%-readonly"), err)
    assert.falsy(err:find("attached", 1, true), err)
  end)
end)
