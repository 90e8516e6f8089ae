-- The `flume` command: the real executable (views-lua/bin/flume), run as a
-- child process on temporary folders; its output, messages and exit codes.
-- (Its modes for scripts, the shell and status --watch: cli_more_spec.lua.)
local H = require "helpers.db"
local cjson = require "cjson"
local C = require "helpers.cli"

local ROOT, BIN, COUNT, TOTAL, AUTHOR = C.ROOT, C.BIN, C.COUNT, C.TOTAL,
  C.AUTHOR
local read, command, flume, lines, jsonl, events, views_part, database =
  C.read, C.command, C.flume, C.lines, C.jsonl, C.events, C.views_part,
  C.database
local q, write = H.q, H.write

local tmp -- a fresh folder per test
local function fresh_tmp()
  tmp = H.tmpdir()
  C.set_tmp(tmp)
end

describe("the flume command", function()
  before_each(fresh_tmp)
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

