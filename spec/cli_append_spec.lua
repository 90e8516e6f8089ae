-- `flume append` reads a file on stdin in chunks whose lines C converts at
-- once (core.json_lines), and a pipe line by line (so that a line is taken
-- as it comes). The two must give the same log, output, errors and exit
-- code for any input: random JSON Lines mixing the values C takes, those it
-- leaves to flume.json, blank lines, CRLF, a byte order mark, a last line
-- without its "\n", lines longer than a chunk and bad lines, in batches of
-- random sizes. The pipe's line-by-line reading is the reference.
local H = require "helpers.db"

local q, write = H.q, H.write

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local SEED = tonumber(os.getenv("FLUME_SEED")) or os.time()

describe("flume append from a file and from a pipe", function()
  local tmp
  before_each(function() tmp = H.tmpdir() end)
  after_each(function() H.rm(tmp) end)

  -- Runs `flume ARGS` with the input file as stdin, or piped through cat.
  local function run(args, input, piped)
    local cmd = H.flume_command(args)
    cmd = piped and ("cat " .. q(input) .. " | " .. cmd) or
      (cmd .. " < " .. q(input))
    local p = io.popen(cmd .. " 2>" .. q(tmp .. "/err"))
    local out = p:read("a")
    local _, _, code = p:close()
    return out, read(tmp .. "/err"), code
  end

  local function log_of(dir)
    local out, err, code = run({ "cat", dir }, tmp .. "/empty")
    assert.equal(0, code, err)
    return out
  end

  local FAST = {
    function(r) return ('{"type":"post","n":%d}'):format(r(1, 1e6)) end,
    function(r) return ('[%d,%d.5,"x\\u00e9",true]'):format(r(-9, 9), r(0, 9)) end,
    function(r) return ('"just a string %d"'):format(r(1, 99)) end,
    function(r) return ('  {"a":{"b":[%d]}}  '):format(r(1, 5)) end,
    function(r) return tostring(r(-1e9, 1e9)) end,
  }
  local SLOW = { -- valid, but left to flume.json
    function() return '{"x":{"$float":"inf"}}' end,
    function() return '{"$bytes":"ff00"}' end,
    function() return '[1,null]' end,
    function() return 'null' end,
  }
  local BAD = {
    function() return '{"unclosed":' end,
    function() return 'nope' end,
    function() return '{"a":1}}' end,
  }

  local function input(r, bad_ok)
    local lines = {}
    if r(1, 4) == 1 then lines[1] = "\239\187\191" end -- a BOM, joined below
    local count = r(0, 3000)
    for i = 1, count do
      local k, line = r(1, 100), nil
      if k <= 70 then line = FAST[r(1, #FAST)](r)
      elseif k <= 80 then line = SLOW[r(1, #SLOW)](r)
      elseif k <= 90 then line = ({ "", "   ", "\t", " \r" })[r(1, 4)]
      elseif k <= 99 or not bad_ok then line = FAST[1](r) .. "\r"
      else line = BAD[r(1, #BAD)](r) end
      if i == 1 and lines[1] then lines[1] = lines[1] .. line
      else lines[#lines + 1] = line end
    end
    if r(1, 20) == 1 then -- a line longer than a chunk (1 MiB)
      lines[#lines + 1] = '"' .. string.rep("y", (1 << 20) + r(0, 5000)) .. '"'
    end
    local text = table.concat(lines, "\n")
    if #lines > 0 and r(1, 3) > 1 then text = text .. "\n" end
    return text
  end

  it("give the same log, output and errors (seed " .. SEED .. ")", function()
    local rng = math.random
    math.randomseed(SEED)
    write(tmp .. "/empty", "")
    for round = 1, 12 do
      local text = input(rng, round % 3 == 0)
      write(tmp .. "/in", text)
      local args = {}
      local b = rng(1, 4)
      if b == 1 then args = { "--batch", tostring(rng(1, 50)) }
      elseif b == 2 then args = { "--batch", tostring(rng(100, 5000)) }
      elseif b == 3 then args = { "--atomic" } end
      local got = {}
      for _, piped in ipairs { false, true } do
        local dir = tmp .. (piped and "/piped" or "/file")
        H.rm(dir)
        local _, err, code = run({ "init", dir }, tmp .. "/empty")
        assert.equal(0, code, err)
        local cmd = { "append", dir }
        for _, a in ipairs(args) do cmd[#cmd + 1] = a end
        local out
        out, err, code = run(cmd, tmp .. "/in", piped)
        got[#got + 1] = { out = out, err = err, code = code, log = log_of(dir) }
      end
      local what = ("seed %d round %d (%s)"):format(SEED, round,
        table.concat(args, " "))
      assert.same(got[2], got[1], what)
    end
  end)

  it("takes a piped line before its input ends", function()
    -- line by line from a pipe: with --batch 1 each line is in the log
    -- while the writer of the pipe still holds it open
    local dir = tmp .. "/db"
    write(tmp .. "/empty", "")
    local _, err, code = run({ "init", dir }, tmp .. "/empty")
    assert.equal(0, code, err)
    local fifo = tmp .. "/fifo"
    assert(os.execute("mkfifo " .. q(fifo)))
    local cmd = H.flume_command { "append", dir, "--batch", "1" }
    local p = io.popen(cmd .. " < " .. q(fifo) .. " > " .. q(tmp .. "/out") ..
      " 2>&1", "r")
    local w = assert(io.open(fifo, "w"))
    w:setvbuf("no")
    w:write('{"first":1}\n')
    local flume = require "flume"
    local seen = false
    for _ = 1, 500 do -- up to 10 s
      local ok, db = pcall(flume.open, dir, { readonly = true })
      if ok then
        seen = db.since == 0
        db:close()
      end
      if seen then break end
      flume.sleep(0.02)
    end
    w:write('{"second":2}\n')
    w:close()
    p:close()
    assert.is_true(seen, "the first line was not appended before the end")
    assert.equal("1\n", read(tmp .. "/out"))
  end)
end)
