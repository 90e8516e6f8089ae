-- Writes the data set's first N values to files the baselines read:
--   DATA.bin    each value's MessagePack bytes (flume's own encoder), after
--               its length as a little-endian uint32 (for the C programs)
--   DATA.jsonl  one JSON object a line (for the JavaScript peers, SQLite
--               and the command-line rows), with --json
--   WIDE.bin    the wide values (data.wide_value) as DATA.bin, with --wide
-- and prints the mean encoded size of each (mean_size, wide_mean_size).
--   lua gen.lua N DATA.bin [--json DATA.jsonl] [--wide WIDE.bin]
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local flume = require "flume"
local data = require "data"

local n, bin_path = tonumber(arg[1]), arg[2]
local json_path, wide_path
for i = 3, #arg, 2 do
  if arg[i] == "--json" then json_path = arg[i + 1]
  elseif arg[i] == "--wide" then wide_path = arg[i + 1]
  else error("gen.lua: unknown option " .. arg[i]) end
end
assert(n and bin_path,
  "usage: gen.lua N DATA.bin [--json DATA.jsonl] [--wide WIDE.bin]")
local encode, pack, format = flume.msgpack.encode, string.pack, string.format

local CHUNK = 1000

--- Writes values 0..n-1 of `value` to `path` as length + MessagePack;
-- `json`, if given, gets each as a JSON line too. Returns the mean size.
local function write(path, value, json)
  local bin = assert(io.open(path, "wb"))
  local bytes = 0
  for first = 0, n - 1, CHUNK do
    local count = math.min(CHUNK, n - first)
    local out, jout = {}, {}
    for j = 1, count do
      local v = value(first + j - 1)
      local s = encode(v)
      bytes = bytes + #s
      out[j] = pack("<s4", s)
      if json then
        -- the text holds only lower-case words: nothing to escape
        jout[j] = format('{"type":"%s","author":"%s","seq":%d,' ..
          '"amount":%.2f,"text":"%s"}\n', v.type, v.author, v.seq, v.amount,
          v.text)
      end
    end
    bin:write(table.concat(out))
    if json then json:write(table.concat(jout)) end
  end
  assert(bin:close())
  return n > 0 and bytes / n or 0
end

local json = json_path and assert(io.open(json_path, "wb"))
print(format("mean_size %.1f", write(bin_path, data.value, json)))
if json then assert(json:close()) end
if wide_path then
  print(format("wide_mean_size %.1f", write(wide_path, data.wide_value)))
end
