-- The `flume` command: the real executable (views-lua/bin/flume), run as a
-- child process on temporary folders; its output, messages and exit codes.
local H = require "helpers.db"
local cjson = require "cjson"

local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
do -- absolute, as the tests run commands in other folders
  local p = io.popen("cd '" .. ROOT .. "' && pwd")
  ROOT = p:read("l")
  p:close()
end
local BIN = ROOT .. "/views-lua/bin/flume"
local COUNT = ROOT .. "/views-lua/examples/count_by_type.lua"
local TOTAL = ROOT .. "/views-lua/examples/total_amount.lua"
local AUTHOR = ROOT .. "/views-lua/examples/by_author.lua"

local q = H.q

local write = H.write

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local tmp -- a fresh folder per test

--- The command line running flume with `args` (a list).
local command = H.flume_command

--- Runs flume; `input` is its stdin (a string) or nil. Returns stdout,
-- stderr and the exit code.
local function flume(args, input)
  local inpath = tmp .. "/stdin"
  write(inpath, input or "")
  local errpath = tmp .. "/stderr"
  local p = io.popen(command(args) .. " <" .. q(inpath) .. " 2>" .. q(errpath))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, read(errpath), code
end

--- JSON Lines as a list of values.
local function lines(out)
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = cjson.decode(line) end
  return list
end

local function jsonl(values)
  local t = {}
  for i, v in ipairs(values) do t[i] = cjson.encode(v) end
  return table.concat(t, "\n") .. "\n"
end

local function events(n, first)
  local types = { "post", "like", "follow" }
  local list = {}
  for i = 1, n do
    local k = (first or 0) + i
    list[i] = { type = types[k % 3 + 1], author = "@u" .. (k % 5), amount = k }
  end
  return list
end

--- A database in tmp/db holding `n` events; returns its folder.
--- verify's output without its first line (the storage walk's).
local function views_part(out)
  return (out:gsub("^storage: ok [^\n]*\n", ""))
end

local function database(n)
  local dir = tmp .. "/db"
  local _, err, code = flume({ "init", dir })
  assert(code == 0, err)
  if n and n > 0 then
    local out
    out, err, code = flume({ "append", dir }, jsonl(events(n)))
    assert(code == 0, err)
    assert(out == (n - 1) .. "\n", out)
  end
  return dir
end

describe("the flume command", function()
  before_each(function() tmp = H.tmpdir() end)
  after_each(function() H.rm(tmp) end)

  describe("help and usage", function()
    it("lists every command with --help", function()
      local out, _, code = flume({ "--help" })
      assert.equal(0, code)
      for _, name in ipairs { "init", "append", "get", "cat", "status", "view",
        "rebuild", "verify", "backup" } do
        assert.truthy(out:find("\n  " .. name .. " "), name)
        local help, _, c = flume({ name, "--help" })
        assert.equal(0, c)
        assert.truthy(help:find("^usage: flume " .. name), help)
      end
    end)

    it("exits with 2 and a one-line message on bad usage", function()
      local out, err, code = flume({})
      assert.equal(2, code)
      assert.equal("", out)
      assert.truthy(err:find("usage: flume COMMAND"))
      _, err, code = flume({ "frobnicate" })
      assert.equal(2, code)
      assert.truthy(err:find("^flume: unknown command frobnicate"))
      for _, args in ipairs {
        { "get", "x" }, { "get", "x", "y" }, { "cat", "x", "--bogus" },
        { "cat", "x", "--limit", "many" }, { "init", "x", "--codec", "json" },
        { "init" }, { "view", "x" }, { "drop", "x" },
      } do
        _, err, code = flume(args)
        assert.equal(2, code, table.concat(args, " "))
        assert.truthy(err:find("^flume: [^\n]+\n$"), err)
      end
    end)
  end)

  describe("init", function()
    it("creates a database and its parent folders, once", function()
      local dir = tmp .. "/a/b/db"
      local out, _, code = flume({ "init", dir })
      assert.equal(0, code)
      assert.truthy(out:find("created %(codec msgpack%)"))
      out, _, code = flume({ "init", dir })
      assert.equal(0, code)
      assert.truthy(out:find("already a flume database %(codec msgpack, " ..
        "0 values%)"))
    end)

    it("refuses another codec for an existing database", function()
      local dir = database()
      local _, err, code = flume({ "init", dir, "--codec", "raw" })
      assert.equal(1, code)
      assert.truthy(err:find("^flume: ECODEC: .* was written with codec " ..
        "'msgpack', not 'raw'\n$"), err)
    end)
  end)

  describe("on a missing database", function()
    it("says so for every command that needs one", function()
      local empty = tmp .. "/empty"
      os.execute("mkdir " .. q(empty))
      for _, args in ipairs {
        { "append", tmp .. "/nope" }, { "get", tmp .. "/nope", "0" },
        { "cat", tmp .. "/nope" }, { "status", tmp .. "/nope" },
        { "view", tmp .. "/nope", "types", COUNT },
        { "rebuild", tmp .. "/nope", "--view", COUNT },
        { "verify", tmp .. "/nope", "--view", COUNT },
        { "backup", tmp .. "/nope", tmp .. "/copy" },
        { "status", empty },
      } do
        local _, err, code = flume(args, "{}\n")
        assert.equal(1, code, table.concat(args, " "))
        assert.truthy(err:find("^flume: .*: no [%w ]+ here") or
          err:find("^flume: .*: no such folder"), err)
      end
      -- and nothing was created
      assert.is_nil(read(tmp .. "/nope/data.mdb"))
      assert.is_nil(read(tmp .. "/copy/data.mdb"))
    end)
  end)

  describe("append, get and cat", function()
    it("appends JSON Lines and prints the last seq", function()
      local dir = database()
      local out, err, code = flume({ "append", dir },
        '{"type":"post","n":1}\n\n{"type":"like","x":1.5,"list":[1,2,3]}\r\n' ..
        '"just a string"\n{"big":1234567890123,"gone":null}\n')
      assert.equal(0, code, err)
      assert.equal("3\n", out)
      out = flume({ "cat", dir })
      assert.equal('{"seq":0,"value":{"n":1,"type":"post"}}\n' ..
        '{"seq":1,"value":{"list":[1,2,3],"type":"like","x":1.5}}\n' ..
        '{"seq":2,"value":"just a string"}\n' ..
        '{"seq":3,"value":{"big":1234567890123}}\n', out)
      out, _, code = flume({ "get", dir, "1" })
      assert.equal(0, code)
      assert.equal('{"list":[1,2,3],"type":"like","x":1.5}\n', out)
      assert.equal('"just a string"\n', (flume({ "get", dir, "-2" })))
    end)

    it("skips a UTF-8 byte order mark before the first line", function()
      local dir = database()
      local out, err, code = flume({ "append", dir },
        '\239\187\191{"a":1}\n{"b":2}\n')
      assert.equal(0, code, err)
      assert.equal("1\n", out)
      assert.equal('{"a":1}\n', (flume({ "get", dir, "0" })))
    end)

    it("reports a bad line by number and appends nothing of its batch",
      function()
        local dir = database(3)
        local _, err, code = flume({ "append", dir },
          '{"type":"post"}\n{"type":"like"}\n{"type": oops}\n{"a":1}\n')
        assert.equal(1, code)
        assert.truthy(err:find("^flume: line 3: bad JSON: .*nothing was " ..
          "appended\n$"), err)
        assert.equal(3, #lines((flume({ "cat", dir }))))
        -- a null at the end of a list cannot be a Lua value either
        _, err, code = flume({ "append", dir }, '[1,2,null]\n')
        assert.equal(1, code)
        assert.truthy(err:find("line 1: bad JSON: null at index 3"), err)
        -- batches of 2: the first two lines go in, the bad batch does not
        _, err, code = flume({ "append", dir, "--batch", "2" },
          '{"a":1}\n{"a":2}\n{"a":3}\nnot json\n')
        assert.equal(1, code)
        assert.truthy(err:find("line 4: bad JSON.*nothing from line 3 on " ..
          "was appended %(2 values before it were, up to seq 4%)"), err)
        assert.equal(5, #lines((flume({ "cat", dir }))))
        -- --atomic: the whole input, or nothing of it
        local many = {}
        for i = 1, 25000 do many[i] = '{"i":' .. i .. '}' end
        _, err, code = flume({ "append", dir, "--atomic" },
          table.concat(many, "\n") .. "\nnot json\n")
        assert.equal(1, code)
        assert.truthy(err:find("line 25001: bad JSON.*nothing was appended"),
          err)
        assert.equal(5, #lines((flume({ "cat", dir }))))
        -- by default, batches of 10,000: two went in
        _, err, code = flume({ "append", dir },
          table.concat(many, "\n") .. "\nnot json\n")
        assert.equal(1, code)
        assert.truthy(err:find("line 25001: bad JSON.*nothing from line " ..
          "20001 on was appended %(20000 values before it were, up to seq " ..
          "20004%)"), err)
        assert.equal(20005, #lines((flume({ "cat", dir }))))
        _, err, code = flume({ "append", dir, "--atomic", "--batch", "3" })
        assert.equal(2, code)
      end)

    it("prints ranges of the log", function()
      local dir = database(10)
      local function seqs(args)
        local out, err, code = flume(args)
        assert(code == 0, err)
        local s = {}
        for i, l in ipairs(lines(out)) do s[i] = l.seq end
        return s
      end
      assert.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, seqs({ "cat", dir }))
      assert.same({ 3, 4, 5 }, seqs({ "cat", dir, "--gt", "2", "--lte", "5" }))
      assert.same({ 3, 4 }, seqs({ "cat", dir, "--gte=3", "--lt=5" }))
      assert.same({ 9, 8, 7 },
        seqs({ "cat", dir, "--reverse", "--limit", "3" }))
      assert.same({ 5, 4 }, seqs({ "cat", dir, "--reverse", "--lte", "5",
        "--gt", "3" }))
      assert.same({}, seqs({ "cat", dir, "--gt", "9" }))
      local l = lines((flume({ "cat", dir, "--gte", "4", "--limit", "1" })))
      assert.same({ { seq = 4, value = events(10)[5] } }, l)
      -- values alone, which append reads: a copy of the log
      local values = flume({ "cat", dir, "--values" })
      assert.same(events(10), lines(values))
      local copy = tmp .. "/copy"
      flume({ "init", copy })
      assert.equal("9\n", (flume({ "append", copy }, values)))
      assert.equal(values, (flume({ "cat", copy, "--values" })))
    end)

    it("says which seqs exist when get misses", function()
      local dir = database(3)
      local out, err, code = flume({ "get", dir, "7" })
      assert.equal(1, code)
      assert.equal("", out)
      assert.equal("flume: ENOTFOUND: no such entry: no value at seq 7 in " ..
        dir ..
        " (it holds seqs 0 to 2)\n", err)
      _, err, code = flume({ "get", dir, "1.5" })
      assert.equal(2, code)
      assert.truthy(err:find("SEQ must be an integer"))
    end)

    it("stores strings as bytes in a raw database, and nothing else", function()
      local dir = tmp .. "/raw"
      assert.equal(0, select(3, flume({ "init", dir, "--codec", "raw" })))
      local out, err, code = flume({ "append", dir }, '"hello"\n"wörld"\n')
      assert.equal(0, code, err)
      assert.equal("1\n", out)
      assert.equal('"wörld"\n', (flume({ "get", dir, "1" })))
      _, err, code = flume({ "append", dir }, '"fine"\n{"type":"post"}\n')
      assert.equal(1, code)
      assert.truthy(err:find("line 2: a raw database stores strings, not " ..
        "tables"), err)
      assert.equal(2, #lines((flume({ "cat", dir }))))
    end)

    it("refuses a database whose codec it cannot decode, but shows it",
      function()
        local dir = tmp .. "/custom"
        write(tmp .. "/custom.lua", [[
local flume = require "flume"
local db = flume.open(arg[1], { codec = { name = "upper",
  encode = function(s) return s:upper() end,
  decode = function(s) return s end } })
db:append("hello")
db:close()
]])
        assert.equal(0, select(2, H.run_lua(tmp .. "/custom.lua", dir)))
        for _, args in ipairs { { "cat", dir }, { "get", dir, "0" },
          { "append", dir }, { "status", dir, "--view", COUNT } } do
          local _, err, code = flume(args, '"x"\n')
          assert.equal(1, code)
          assert.equal("flume: ECODEC: database was written with another " ..
            "codec: " .. dir .. " uses the codec " ..
            "'upper', which the command line cannot decode (it knows " ..
            "msgpack and raw)\n", err)
        end
        -- status only reads what it can without decoding
        local out, err, code = flume({ "status", dir })
        assert.equal(0, code, err)
        assert.truthy(out:find("since 0 %(1 entries%).*codec upper"), out)
      end)

    it("follows the log with --live, beside another writer, until Ctrl-C",
      function()
        local dir = database(2)
        local outpath, pidpath = tmp .. "/live.out", tmp .. "/live.pid"
        local p = io.popen("echo $$ > " .. q(pidpath) .. "; exec " ..
          command({ "cat", dir, "--live", "--gt", "0" }) .. " > " ..
          q(outpath) .. " 2>&1")
        local function wait_for(n)
          for _ = 1, 200 do
            local text = read(outpath) or ""
            local _, count = text:gsub("\n", "")
            if count >= n then return text end
            os.execute("sleep 0.05")
          end
          error("the live cat printed: " .. tostring(read(outpath)))
        end
        wait_for(1)
        -- another process appends while the live cat runs
        local _, err, code = flume({ "append", dir }, jsonl(events(3, 2)))
        assert.equal(0, code, err)
        local text = wait_for(4)
        os.execute("kill -INT $(cat " .. q(pidpath) .. ")")
        local _, _, status = p:close()
        assert.equal(130, status)
        local s = {}
        for i, l in ipairs(lines(text)) do s[i] = l.seq end
        assert.same({ 1, 2, 3, 4 }, s)
      end)
  end)

  describe("view", function()
    it("attaches a view and calls its methods, printing JSON", function()
      local dir = database(10)
      local out, err, code = flume({ "view", dir, "types", COUNT, "get",
        "post" })
      assert.equal(0, code, err)
      assert.equal("3\n", out)
      out = flume({ "view", dir, "types", COUNT })
      assert.same({ { key = "follow", value = 3 }, { key = "like", value = 4 },
        { key = "post", value = 3 } }, lines(out))
      out = flume({ "view", dir, "types", COUNT, "read",
        '{"reverse": true, "limit": 1}' })
      assert.same({ { key = "post", value = 3 } }, lines(out))
      out = flume({ "view", dir, "total", TOTAL, "average" })
      assert.equal("5.5\n", out)
      out = flume({ "view", dir, "total", TOTAL, "get" })
      assert.same({ sum = 55, count = 10 }, cjson.decode(out))
      out = flume({ "view", dir, "authors", AUTHOR, "get", "@u0" })
      local got = cjson.decode(out)
      assert.same({ 5, 10 }, { got[1].amount, got[2].amount })
      out = flume({ "view", dir, "authors", AUTHOR, "get", "@nobody" })
      assert.equal("[]\n", out)
      out = flume({ "view", dir, "types", COUNT, "status" })
      local st = cjson.decode(out)
      assert.equal("group", st.kind)
      assert.equal(9, st.since)
    end)

    it("prints a source method's values as JSON Lines and passes JSON args",
      function()
        local dir = database(6)
        local script = tmp .. "/amounts.lua"
        write(script, [[
-- amounts by type, with methods taking arguments
return {
  version = 1,
  map = function(v) return v.type, v.amount end,
  reduce = function(acc, a) acc = acc or {}; acc[#acc + 1] = a; return acc end,
  methods = {
    above = { "source", function(r, type, min)
      local out = {}
      for _, a in ipairs(r.get(type) or {}) do
        if a > min then out[#out + 1] = a end
      end
      return out
    end },
    pair = { "async", function(r, a, b) return { a = a, b = b } end },
  },
}
]])
        local out, err, code = flume({ "view", dir, "amounts", script, "above",
          "post", "2" })
        assert.equal(0, code, err)
        assert.equal("3\n6\n", out)
        out = flume({ "view", dir, "amounts", script, "pair", "42", '"42"' })
        assert.equal('{"a":42,"b":"42"}\n', out)
      end)

    it("fails on an unknown method, a missing or broken script, a failing view",
      function()
        local dir = database(3)
        local _, err, code = flume({ "view", dir, "total", TOTAL, "median" })
        assert.equal(1, code)
        assert.equal("flume: view 'total' has no method 'median' (it has: " ..
          "average, get, status)\n", err)
        _, err, code = flume({ "view", dir, "v", tmp .. "/none.lua" })
        assert.equal(1, code)
        assert.truthy(err:find("^flume: .*none.lua: no such view script\n$"))
        write(tmp .. "/broken.lua", "return { version = 1, map = function( }")
        _, err, code = flume({ "view", dir, "broken", tmp .. "/broken.lua" })
        assert.equal(1, code)
        assert.truthy(err:find("^flume: view 'broken' .*ESCRIPT"), err)
        write(tmp .. "/bad.lua", "return { version = 1, map = function(v, " ..
          "seq) if seq == 1 then error('boom') end return v.type end }\n")
        _, err, code = flume({ "view", dir, "bad", tmp .. "/bad.lua", "get",
          "x" })
        assert.equal(1, code)
        assert.truthy(err:find("^flume: EVIEW: .*boom"), err)
        assert.falsy(err:find("\n.", 1))
      end)
  end)

  describe("status", function()
    it("shows the log and the views it has records of", function()
      local dir = database(10)
      assert.equal(0, select(3, flume({ "view", dir, "types", COUNT })))
      assert.equal(0, select(3, flume({ "view", dir, "total", TOTAL })))
      flume({ "append", dir }, jsonl(events(5, 10)))
      local out, err, code = flume({ "status", dir })
      assert.equal(0, code, err)
      assert.truthy(out:find("log       since 14 %(15 entries%), " ..
        "[%d.]+ %a+ on disk %([%d.]+ %a+ in use%), codec msgpack, " ..
        "format 2\n"), out)
      assert.truthy(out:find("\n  types +group +1 +9 +5 "), out)
      assert.truthy(out:find("\n  total +reduce +1 +9 +5 "), out)
      local st = cjson.decode((flume({ "status", dir, "--json" })))
      assert.equal(14, st.since)
      assert.equal(15, st.entries)
      assert.equal("msgpack", st.codec)
      assert.equal(2, st.format)
      assert.is_true(st.size > 0)
      assert.equal(2, #st.views)
      local types = st.views[2]
      assert.equal("types", types.name)
      assert.same({ "group", 1, 9, 5, false },
        { types.kind, types.version, types.since, types.lag, types.attached })
      assert.truthy(types.hash:match("^%x+$"))
      assert.is_true(types.state_size > 0)
    end)

    it("attaches --view scripts: catches up, warns of a changed script, " ..
      "shows the last error", function()
        local dir = database(4)
        flume({ "view", dir, "types", COUNT })
        flume({ "append", dir }, jsonl(events(2, 4)))
        local changed = tmp .. "/types.lua"
        write(changed, read(COUNT) .. "-- a comment is a change\n")
        local failing = tmp .. "/failing.lua"
        write(failing, "return { version = 1, map = function(v, seq) " ..
          "if seq == 3 then error('no seq 3 here') end return v.type end }\n")
        local out, err, code = flume({ "status", dir, "--view",
          "types=" .. changed, "--view", "failing=" .. failing, "--json" })
        assert.equal(0, code, err)
        local st = cjson.decode(out)
        local failed, types = st.views[1], st.views[2]
        assert.equal(5, types.since)
        assert.equal(0, types.lag)
        assert.truthy(types.warnings[1]:find("script changed without a " ..
          "version bump"))
        assert.is_true(failed.since < 3) -- its last checkpoint
        assert.truthy(failed.error:find("no seq 3 here"), failed.error)
        out = flume({ "status", dir, "--view", "types=" .. COUNT })
        assert.truthy(out:find("\n  types +group +1 +5 +0 "), out)
      end)

    it("works while another process has the database open for writing",
      function()
        local dir = database(5)
        local child = tmp .. "/hold.lua"
        write(child, [[
local flume = require "flume"
local db = flume.open(arg[1])
print("open")
io.stdout:flush()
io.read("l")
db:close()
]])
        local p = io.popen(H.lua_command(child, dir) .. " > " ..
          q(tmp .. "/hold.out"), "w")
        for _ = 1, 200 do
          if (read(tmp .. "/hold.out") or "") ~= "" then break end
          os.execute("sleep 0.05")
        end
        local out, err, code = flume({ "status", dir })
        assert.equal(0, code, err)
        assert.truthy(out:find("since 4"))
        out, err, code = flume({ "get", dir, "4" })
        assert.equal(0, code, err)
        _, err, code = flume({ "append", dir }, "{}\n")
        assert.equal(1, code)
        assert.truthy(err:find("^flume: ELOCKED"), err)
        p:write("\n")
        p:close()
      end)
  end)

  describe("rebuild and verify", function()
    it("verifies views equal to a recomputation from the log", function()
      local dir = database(20)
      flume({ "view", dir, "types", COUNT })
      flume({ "view", dir, "authors", AUTHOR })
      local out, err, code = flume({ "verify", dir, "--view", "types=" .. COUNT,
        "--view", "authors=" .. AUTHOR, "--view", "total=" .. TOTAL })
      assert.equal(0, code, err)
      out = views_part(out)
      assert.equal("types: ok (group, 3 keys, since 19)\n" ..
        "authors: ok (index, 20 entries, since 19)\n" ..
        "total: ok (reduce, since 19)\n", out)
    end)

    it("catches a tampered view, says where, and rebuild repairs it",
      function()
        local dir = database(9)
        flume({ "view", dir, "types", COUNT })
        -- another script at the same version writes the view's state
        local wrong = tmp .. "/wrong.lua"
        write(wrong, "return { version = 1, map = function(v) return " ..
          "v.type, 1 end, reduce = function(acc, n) return (acc or 0) + " ..
          "n + 100 end }\n")
        flume({ "append", dir }, '{"type":"post"}\n')
        assert.equal(0, select(3, flume({ "view", dir, "types", wrong })))
        local out, err, code = flume({ "verify", dir, "types",
          "--view", "types=" .. COUNT })
        assert.equal(1, code)
        out = views_part(out)
        assert.equal('types: DIFFERS from the log in 1 place:\n' ..
          '  key "post": stored 104, recomputed 4\n', out)
        assert.truthy(err:find("flume: verify: 1 of 1 view of .* differ " ..
          "from the log\n$"), err)
        out, err, code = flume({ "rebuild", dir, "types=" .. COUNT })
        assert.equal(0, code, err)
        assert.truthy(out:find("^rebuilt types from 10 values in "), out)
        out, err, code = flume({ "verify", dir, "types=" .. COUNT })
        assert.equal(0, code, err)
        assert.equal("types: ok (group, 3 keys, since 9)\n", views_part(out))
      end)

    it("catches a tampered reduce view and index view", function()
      local dir = database(4)
      flume({ "view", dir, "total", TOTAL })
      flume({ "view", dir, "authors", AUTHOR })
      write(tmp .. "/total.lua", "return { version = 1, initial = { sum = " ..
        "0, count = 0 }, map = function(v) return v.amount end, reduce = " ..
        "function(t, a) t.sum = t.sum + 2 * a; t.count = t.count + 1; " ..
        "return t end }\n")
      write(tmp .. "/authors.lua", "return { version = 1, map = function(v) " ..
        "return v.author .. '!' end }\n")
      flume({ "append", dir }, '{"author":"@z","amount":1}\n')
      flume({ "view", dir, "total", tmp .. "/total.lua" })
      flume({ "view", dir, "authors", tmp .. "/authors.lua" })
      local out, _, code = flume({ "verify", dir, "--view", "total=" .. TOTAL,
        "--view", "authors=" .. AUTHOR })
      assert.equal(1, code)
      assert.truthy(out:find("total: DIFFERS from the log in 1 place:\n" ..
        "  state.sum: stored 12, recomputed 11\n", 1, true), out)
      assert.truthy(out:find("authors: DIFFERS from the log in 2 places:\n" ..
        '  key "@z": no stored entry for seq 4\n' ..
        '  key "@z!": stored an entry for seq 4 that the log does not give\n',
        1, true), out)
    end)

    it("uses the scripts the database stores, shows and drops them",
      function()
        local dir = database(3)
        flume({ "view", dir, "types", COUNT })
        -- no script given: the stored ones
        local out, err, code = flume({ "verify", dir })
        assert.equal(0, code, err)
        assert.truthy(out:find("^storage: ok %(%d+ entries in 3 tables%)\n" ..
          "types: ok %(group, 3 keys, since 2%)\n$"), out)
        out, err, code = flume({ "rebuild", dir })
        assert.equal(0, code, err)
        assert.truthy(out:find("^rebuilt types from 3 values in "), out)
        out, err, code = flume({ "rebuild", dir, "types" })
        assert.equal(0, code, err)
        out, err, code = flume({ "view", dir, "types", "get", "post" })
        assert.equal(0, code, err)
        assert.equal("1\n", out) -- database(3): a post, a like, a follow
        out, err, code = flume({ "view", dir, "types", "--script" })
        assert.equal(0, code, err)
        assert.equal(read(COUNT), out)
        _, err, code = flume({ "verify", dir, "nope", "--view", COUNT })
        assert.equal(1, code)
        assert.truthy(err:find("^flume: no view named 'nope' in "), err)
        _, err, code = flume({ "view", dir, "nope" })
        assert.equal(1, code)
        assert.truthy(err:find("^flume: no view named 'nope' in "), err)
        -- drop: record, script and state go
        out, err, code = flume({ "drop", dir, "types" })
        assert.equal(0, code, err)
        assert.equal("dropped view 'types' from " .. dir .. "\n", out)
        out = flume({ "status", dir, "--json" })
        local st = require("cjson").decode(out)
        assert.equal(0, #st.views)
        _, err, code = flume({ "drop", dir, "types" })
        assert.equal(1, code)
        assert.truthy(err:find("^flume: no view named 'types' in "), err)
        out, err, code = flume({ "verify", dir })
        assert.equal(0, code, err)
        assert.truthy(out:find("^storage: ok %(%d+ entries in 3 tables%)\n$"),
          out)
      end)
  end)

  describe("backup", function()
    it("copies a database another process is appending to, consistently",
      function()
        local dir = database(100)
        flume({ "view", dir, "types", COUNT })
        local child = tmp .. "/writer.lua"
        -- it appends until told to stop, so the backup runs beside it
        write(child, [[
local flume = require "flume"
local db = flume.open(arg[1])
db:use("types", arg[2])
local types = { "post", "like", "follow" }
for i = 1, 10000 do
  local batch = {}
  for j = 1, 200 do
    batch[j] = { type = types[(i + j) % 3 + 1], author = "@w", amount = j }
  end
  db:append(batch, { batch = true })
  if i == 1 then print("writing") io.stdout:flush() end
  local stop = io.open(arg[3])
  if stop then stop:close() break end
end
db.types:ready()
print(db.since)
db:close()
]])
        local stop = tmp .. "/stop"
        local writer = io.popen(H.lua_command(child, dir, COUNT, stop))
        assert.equal("writing", writer:read("l"))
        local copy = tmp .. "/copy"
        local out, err, code = flume({ "backup", dir, copy })
        write(stop, "")
        local last = tonumber(writer:read("a"):match("%d+"))
        writer:close()
        assert.equal(0, code, err)
        assert.truthy(out:find("^" .. copy:gsub("%p", "%%%0") ..
          ": backup of .* at since %d+ %(%d+ values%), [%d.]+ %a+\n$"), out)
        -- a snapshot taken while the writer ran: a prefix of the log
        local since = tonumber(out:match("at since (%d+)"))
        assert.is_true(since >= 299 and since <= last, out)
        out, err, code = flume({ "verify", copy, "--view", "types=" .. COUNT })
        assert.equal(0, code, err)
        assert.truthy(views_part(out):find("^types: ok %(group, 3 keys, " ..
          "since " .. since))
        local a = flume({ "cat", copy, "--gt", since - 5 })
        local b = flume({ "cat", dir, "--gt", since - 5, "--limit", 5 })
        assert.equal(b, a)
      end)

    it("refuses a destination that is not empty", function()
      local dir = database(2)
      local _, err, code = flume({ "backup", dir, dir })
      assert.equal(1, code)
      assert.truthy(err:find("not empty"), err)
      write(tmp .. "/file", "x")
      _, err, code = flume({ "backup", dir, tmp .. "/file" })
      assert.equal(1, code)
      assert.truthy(err:find("exists, not a folder"), err)
    end)
  end)

  describe("the README", function()
    it("shows a session that gives the output it shows", function()
      local readme = read(ROOT .. "/README.md")
      local session = readme:match("## The command line.-```console\n(.-)```")
      assert.truthy(session, "no console session in README.md")
      -- the session runs in tmp, where views-lua is the checkout's
      os.execute("ln -s " .. q(ROOT .. "/views-lua") .. " " ..
        q(tmp .. "/views-lua"))
      local flume_cmd = H.lua .. " " .. q(BIN)
      local function normal(text)
        return (text:gsub("[%d.]+ [KMG]?i?B", "SIZE"):gsub("%x%x%x%x%x%x%x%x" ..
          "%x%x%x%x%x%x%x%x", "HASH"))
      end
      local steps, cmd, expected = 0, nil, {}
      local function check()
        if not cmd then return end
        cmd = cmd:gsub("%s+#[^\n]*$", ""):gsub(" %-%-live", "")
        cmd = cmd:gsub("^flume ", flume_cmd .. " "):gsub("| flume ",
          "| " .. flume_cmd .. " ")
        local p = io.popen("cd " .. q(tmp) .. " && " .. cmd .. " 2>&1")
        local out = p:read("a")
        p:close()
        assert.equal(normal(table.concat(expected)), normal(out))
        steps, cmd, expected = steps + 1, nil, {}
      end
      local continued = false
      for line in session:gmatch("[^\n]*\n") do
        if continued then
          cmd = cmd .. line:gsub("^%s+", " "):gsub("\n$", "")
        elseif line:find("^%$ ") then
          check()
          cmd = line:sub(3):gsub("\n$", "")
        elseif line ~= "^C\n" then
          expected[#expected + 1] = line
        end
        continued = cmd ~= nil and cmd:find("\\$") ~= nil
        if continued then cmd = cmd:gsub("\\$", "") end
      end
      check()
      assert.is_true(steps >= 8, "only " .. steps .. " commands")
    end)
  end)

  describe("the progress bar", function()
    -- `script` gives the command a terminal; what it shows comes back on
    -- our side of the pty, progress bar and all.
    local function in_terminal(args, input)
      local inpath = tmp .. "/stdin"
      write(inpath, input)
      -- (not `script` itself under the sanitizers' LD_PRELOAD: it leaks)
      local p = io.popen("FLUME_PROGRESS_DELAY=0 env -u LD_PRELOAD " ..
        "script -qfec " .. q(command(args) .. " < " .. q(inpath)) ..
        " /dev/null < /dev/null")
      local out = p:read("a")
      local _, _, code = p:close()
      return out, code
    end

    it("shows on a terminal and ends at 100%", function()
      local dir = database()
      local out, code = in_terminal({ "append", dir }, jsonl(events(20000)))
      assert.equal(0, code, out)
      local frames = {}
      for frame in out:gmatch("\r\27%[K([^\r\n]*)") do
        frames[#frames + 1] = frame
      end
      assert.is_true(#frames >= 2, out)
      assert.truthy(frames[1]:find("^appending %[[# ]+%] +%d+%%  %d+ " ..
        "values/s  ETA %d+:%d%d$"), frames[1])
      assert.truthy(frames[#frames]:find("^appending %[#+%] 100%%  %d+ " ..
        "values/s  in %d+:%d%d$"), frames[#frames])
      assert.truthy(out:find("19999\r?\n"), out)
      out, code = in_terminal({ "rebuild", dir, "types=" .. COUNT }, "")
      assert.equal(0, code, out)
      assert.truthy(out:find("rebuilding types %[#+%] 100%%"), out)
    end)

    it("stays quiet with --quiet and when stderr is not a terminal",
      function()
        local dir = database()
        local out = in_terminal({ "append", dir, "--quiet" },
          jsonl(events(2000)))
        assert.equal("1999", out:match("^(%d+)\r?\n$"))
        local err
        out, err = flume({ "append", dir }, jsonl(events(2000)))
        assert.equal("3999\n", out)
        assert.equal("", err)
      end)
  end)
end)

describe("the flume command for scripts", function()
  local tmp
  before_each(function() tmp = H.tmpdir() end)
  after_each(function() H.rm(tmp) end)

  local function run(args, input)
    local cmd = H.flume_command(args)
    if input then
      H.write(tmp .. "/in", input)
      cmd = cmd .. " < " .. H.q(tmp .. "/in")
    end
    local p = io.popen(cmd .. " 2>" .. H.q(tmp .. "/err"))
    local out = p:read("a")
    local _, _, code = p:close()
    local f = io.open(tmp .. "/err")
    local err = f:read("a")
    f:close()
    return out, err, code
  end

  it("prints one JSON object with --json, on every command", function()
    local cjson = require "cjson"
    local dir = tmp .. "/db"
    local function json(args, input)
      local out, err, code = run(args, input)
      assert.equal(0, code, err)
      assert.is_nil(out:find("\n.", 1), "one line: " .. out)
      return cjson.decode(out)
    end
    local r = json({ "init", dir, "--json" })
    assert.same({ path = dir, created = true, codec = "msgpack", values = 0 },
      r)
    r = json({ "append", dir, "--json" }, '{"type":"post"}\n{"type":"x"}\n')
    assert.same({ last = 1, appended = 2 }, r)
    H.write(tmp .. "/types.lua", [[return { version = 1,
      map = function(v) return v.type, 1 end,
      reduce = function(a, n) return (a or 0) + n end }]])
    json({ "view", dir, "types", tmp .. "/types.lua", "get", "post" })
    r = json({ "status", dir, "--json" })
    assert.equal(1, r.since)
    r = json({ "verify", dir, "--json" })
    assert.is_true(r.storage.ok)
    assert.same({ { name = "types", ok = true, kind = "group", entries = 2,
      since = 1 } }, r.views)
    r = json({ "rebuild", dir, "--json" })
    assert.same({ "types" }, r.rebuilt)
    assert.equal(2, r.values)
    r = json({ "backup", dir, tmp .. "/copy", "--json" })
    assert.equal(1, r.since)
    assert.equal(tmp .. "/copy", r.path)
    r = json({ "drop", tmp .. "/copy", "types", "--json" })
    assert.same({ path = tmp .. "/copy", dropped = "types" }, r)
    r = json({ "init", dir, "--json" })
    assert.is_false(r.created)
    assert.equal(2, r.values)
  end)

  it("lists --json in every command's help, with what it changes",
    function()
      for _, name in ipairs({ "init", "append", "get", "cat", "status",
        "view", "rebuild", "verify", "backup", "drop", "shell" }) do
        local out, err, code = run({ name, "--help" })
        assert.equal(0, code, err)
        local line = out:match("\n  %-%-json +([^\n]+)")
        assert.truthy(line, name .. " --help: " .. out)
      end
    end)

  it("status --help shows --watch as the parser takes it", function()
    local out = run({ "status", "--help" })
    assert.truthy(out:find("[--watch [--interval S]]", 1, true), out)
    local dir = tmp .. "/db"
    run({ "init", dir })
    local _, err, code = run({ "status", dir, "--watch", "2" })
    assert.equal(2, code) -- SECONDS is not an argument of --watch
    assert.truthy(err:find("too many arguments", 1, true), err)
  end)

  it("status --check fails for a failed view or one lagging too far",
    function()
      local dir = tmp .. "/db"
      run({ "init", dir })
      run({ "append", dir }, '{"n":1}\n{"n":2}\n')
      H.write(tmp .. "/ok.lua", [[return { version = 1, initial = 0,
        reduce = function(t, v) return t + v.n end }]])
      run({ "view", dir, "ok", tmp .. "/ok.lua" })
      local out, err, code = run({ "status", dir, "--check" })
      assert.equal(0, code, err)
      -- a lag: values the view has not seen (no writer keeps it up)
      run({ "append", dir }, '{"n":3}\n{"n":4}\n{"n":5}\n')
      _, err, code = run({ "status", dir, "--check", "--max-lag", "2" })
      assert.equal(1, code)
      assert.truthy(err:find("^flume: check: view 'ok' lags 3 values " ..
        "behind the log %(more than 2%)\n$"), err)
      _, err, code = run({ "status", dir, "--check", "--max-lag", "3" })
      assert.equal(0, code, err)
      -- a failed view: its error, stored by the writer it failed in
      H.write(tmp .. "/bad.lua", [[return { version = 1, initial = 0,
        reduce = function(t, v) error("bad " .. v.n) end }]])
      run({ "view", dir, "bad", tmp .. "/bad.lua" })
      out, err, code = run({ "status", dir, "--check", "--json" })
      assert.equal(1, code)
      assert.truthy(err:find("^flume: check: view 'bad' failed at seq 0: "),
        err)
      assert.falsy(err:find("failed.*failed"), err)
      local st = require("cjson").decode(out)
      assert.equal(1, #st.problems)
      _, err, code = run({ "status", dir, "--max-lag", "1" })
      assert.equal(2, code)
    end)

  it("exits 130 on Ctrl-C", function()
    local dir = tmp .. "/db"
    run({ "init", dir })
    local lines = {}
    for i = 1, 200000 do lines[i] = '{"i":' .. i .. '}' end
    H.write(tmp .. "/big", table.concat(lines, "\n") .. "\n")
    local pidpath = tmp .. "/pid"
    -- a slow reader of its input keeps it busy; Ctrl-C ends it
    local p = io.popen("{ while read -r l; do printf '%s\\n' \"$l\"; " ..
      "sleep 0.0002; done < " .. H.q(tmp .. "/big") .. "; } | sh -c " ..
      H.q("echo $$ > " .. H.q(pidpath) .. "; exec " ..
        H.flume_command({ "append", dir, "--batch", "10" })) ..
      " 2>" .. H.q(tmp .. "/err") .. "; echo $? > " .. H.q(tmp .. "/code"))
    for _ = 1, 500 do
      local f = io.open(pidpath)
      if f then f:close() break end
      os.execute("sleep 0.01")
    end
    os.execute("sleep 0.5; kill -INT $(cat " .. H.q(pidpath) .. ")")
    p:close()
    local f = io.open(tmp .. "/code")
    local code = f and f:read("n")
    if f then f:close() end
    local e = io.open(tmp .. "/err")
    local err = e and e:read("a") or ""
    if e then e:close() end
    assert.equal(130, code, err)
  end)
end)

describe("flume shell", function()
  local tmp, dir
  before_each(function()
    tmp = H.tmpdir()
    dir = tmp .. "/db"
    H.write(tmp .. "/types.lua", [[return { version = 1,
      map = function(v) return v.type, 1 end,
      reduce = function(a, n) return (a or 0) + n end }]])
    os.execute(H.flume_command({ "init", dir }) .. " >/dev/null")
    os.execute(H.flume_command({ "view", dir, "types", tmp .. "/types.lua" })
      .. " >/dev/null")
  end)
  after_each(function() H.rm(tmp) end)

  it("runs Lua lines with db open and the stored views mounted", function()
    H.write(tmp .. "/in", 'db:append({ type = "post" })\n' ..
      'db.types:get("post")\nx = 1 +\ndb:get(0)\nerror("boom")\n' ..
      '1, "two", {3}\n.quit\ndb:get(0)\n')
    local p = io.popen(H.flume_command({ "shell", dir }) .. " < " ..
      H.q(tmp .. "/in") .. " 2>" .. H.q(tmp .. "/err"))
    local out = p:read("a")
    assert.is_true(p:close())
    assert.equal('0\n1\n{"type":"post"}\n1\n"two"\n[3]\n', out)
    local f = io.open(tmp .. "/err")
    local err = f:read("a")
    f:close()
    assert.truthy(err:find("error: shell:1: unexpected symbol", 1, true), err)
    assert.truthy(err:find("error: shell:1: boom", 1, true), err)
  end)

  it("is a prompt under a real terminal (tmux)", function()
    local session = "flume-shell-" .. tostring(os.time()) .. math.random(1e6)
    local function tmux(args)
      local p = io.popen("tmux " .. args .. " 2>&1")
      local o = p:read("a")
      p:close()
      return o
    end
    tmux("new-session -d -s " .. session .. " -x 120 -y 20 " ..
      H.q(H.flume_command({ "shell", dir })))
    local function screen_has(text)
      for _ = 1, 300 do
        local s = tmux("capture-pane -p -t " .. session)
        if s:find(text, 1, true) then return s end
        os.execute("sleep 0.02")
      end
      return tmux("capture-pane -p -t " .. session)
    end
    local s = screen_has("flume> ")
    assert.truthy(s:find("flume shell on " .. dir, 1, true), s)
    assert.truthy(s:find("views: types", 1, true), s)
    tmux("send-keys -t " .. session .. " 'db:append({ type = \"like\" })' Enter")
    tmux("send-keys -t " .. session .. " 'db.types:get(\"like\")' Enter")
    s = screen_has("flume> \n")
    s = screen_has('db.types:get("like")\n1\nflume>')
    assert.truthy(s:find('db.types:get("like")\n1\nflume>', 1, true), s)
    -- Ctrl-C cancels the line being typed; the prompt goes on
    tmux("send-keys -t " .. session .. " 'db:get(' C-c")
    tmux("send-keys -t " .. session .. " '40 + 2' Enter")
    s = screen_has("\n42\nflume>")
    assert.truthy(s:find("\n42\nflume>", 1, true), s)
    tmux("send-keys -t " .. session .. " C-d")
    for _ = 1, 300 do
      if not tmux("has-session -t " .. session):find("^$") then break end
      os.execute("sleep 0.02")
    end
    tmux("kill-session -t " .. session) -- ended already, or ends now
  end)
end)

describe("flume shell with input that is not a terminal", function()
  it("ends with 130 on Ctrl-C", function()
    local tmp = H.tmpdir()
    local dir = tmp .. "/db"
    os.execute(H.flume_command({ "init", dir }) .. " >/dev/null")
    local pidpath, codepath = tmp .. "/pid", tmp .. "/code"
    -- its input stays open (sleep) and says nothing: it waits at its read
    local feedpid = tmp .. "/feedpid"
    local shell = "sh -c " .. H.q("echo $$ > " .. H.q(pidpath) .. "; exec " ..
      H.flume_command({ "shell", dir })) .. " 2>/dev/null; echo $? > " ..
      H.q(codepath)
    local p = io.popen("( sh -c " .. H.q("echo $$ > " .. H.q(feedpid) ..
      "; exec sleep 30") .. " | sh -c " .. H.q(shell) .. " ) 2>/dev/null")
    for _ = 1, 500 do
      local f = io.open(pidpath)
      if f then f:close() break end
      os.execute("sleep 0.01")
    end
    os.execute("sleep 0.3; kill -INT $(cat " .. H.q(pidpath) .. ")")
    local code
    for _ = 1, 500 do
      local f = io.open(codepath)
      code = f and f:read("n")
      if f then f:close() end
      if code then break end
      os.execute("sleep 0.01")
    end
    os.execute("kill $(cat " .. H.q(feedpid) .. ") 2>/dev/null")
    p:close()
    H.rm(tmp)
    assert.equal(130, code)
  end)
end)

describe("flume status --watch", function()
  it("refreshes lag and rate in place beside a writer, Ctrl-C ends it " ..
     "with 130", function()
    local tmp = H.tmpdir()
    local dir = tmp .. "/db"
    H.write(tmp .. "/types.lua", [[return { version = 1,
      map = function(v) return v.type, 1 end,
      reduce = function(a, n) return (a or 0) + n end }]])
    H.write(tmp .. "/writer.lua", [=[
local flume = require "flume"
local db = flume.open(arg[1])
db:use("types", arg[2])
local stop = arg[3]
repeat
  local batch = {}
  for i = 1, 50 do batch[i] = { type = "t" .. i % 3 } end
  db:append(batch, { batch = true })
  flume.sleep(0.02)
  local f = io.open(stop)
  if f then f:close() end
until f
db:close()
]=])
    local stop = tmp .. "/stop"
    local writer = io.popen(H.lua_command(tmp .. "/writer.lua", dir,
      tmp .. "/types.lua", stop) .. " 2>&1")
    local session = "flume-watch-" .. os.time() .. math.random(1e6)
    local function tmux(args)
      local p = io.popen("tmux " .. args .. " 2>&1")
      local o = p:read("a")
      p:close()
      return o
    end
    local code = tmp .. "/code"
    -- the folder exists once the writer made it
    for _ = 1, 300 do
      if io.open(dir .. "/data.mdb") then break end
      os.execute("sleep 0.02")
    end
    tmux("new-session -d -s " .. session .. " -x 120 -y 20 " ..
      H.q(H.flume_command({ "status", dir, "--watch", "--interval", "0.2" }) ..
        "; echo $? > " .. H.q(code)))
    local screen
    for _ = 1, 500 do
      screen = tmux("capture-pane -p -t " .. session)
      local rate = screen:match("types +group +%d+ +%d+ +(%d+) +running")
      if rate and tonumber(rate) > 0 then break end
      os.execute("sleep 0.02")
    end
    assert.truthy(screen:match("types +group +%d+ +%d+ +[1-9]%d* +running"),
      screen)
    -- in place: one header on the screen, however many refreshes
    local _, headers = screen:gsub("name +kind +since", "")
    assert.equal(1, headers, screen)
    tmux("send-keys -t " .. session .. " C-c")
    local got
    for _ = 1, 300 do
      local f = io.open(code)
      if f then got = f:read("n"); f:close() break end
      os.execute("sleep 0.02")
    end
    tmux("kill-session -t " .. session)
    H.write(stop, "")
    writer:read("a")
    writer:close()
    assert.equal(130, got)
    H.rm(tmp)
  end)
end)
