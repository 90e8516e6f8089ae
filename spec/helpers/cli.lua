-- What the specs of the `flume` command share (cli_spec.lua,
-- cli_more_spec.lua): running the real executable on a test's folder, and
-- its data. Each test sets the folder with set_tmp.
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

local read = H.read

local tmp -- a fresh folder per test (set_tmp)

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


return {
  ROOT = ROOT, BIN = BIN, COUNT = COUNT, TOTAL = TOTAL, AUTHOR = AUTHOR,
  read = read, command = command, flume = flume, lines = lines,
  jsonl = jsonl, events = events, views_part = views_part,
  database = database,
  set_tmp = function(dir) tmp = dir end,
}
