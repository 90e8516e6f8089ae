-- Writes the data set's first N values to files the baselines read:
--   DATA.bin    each value's MessagePack bytes (flume's own encoder), after
--               its length as a little-endian uint32 (for the C programs)
--   DATA.jsonl  one JSON object a line (for the JavaScript peers), if asked
-- and prints the mean encoded size.
--   lua gen.lua N DATA.bin [DATA.jsonl]
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local flume = require "flume"
local data = require "data"

local n, bin_path, json_path = tonumber(arg[1]), arg[2], arg[3]
assert(n and bin_path, "usage: gen.lua N DATA.bin [DATA.jsonl]")
local encode, pack, format = flume.msgpack.encode, string.pack, string.format

local bin = assert(io.open(bin_path, "wb"))
local json = json_path and assert(io.open(json_path, "wb"))
local bytes = 0
local CHUNK = 1000
for first = 0, n - 1, CHUNK do
  local count = math.min(CHUNK, n - first)
  local out, jout = {}, {}
  for j = 1, count do
    local v = data.value(first + j - 1)
    local s = encode(v)
    bytes = bytes + #s
    out[j] = pack("<s4", s)
    if json then
      -- the text holds only lower-case words: nothing to escape
      jout[j] = format('{"type":"%s","author":"%s","seq":%d,"amount":%.2f,' ..
        '"text":"%s"}\n', v.type, v.author, v.seq, v.amount, v.text)
    end
  end
  bin:write(table.concat(out))
  if json then json:write(table.concat(jout)) end
end
assert(bin:close())
if json then assert(json:close()) end
print(format("mean_size %.1f", n > 0 and bytes / n or 0))
