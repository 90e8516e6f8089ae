-- The benchmark's data set: value i (the one at seq i) is a pure function
-- of i, so every process, and every run, sees the same values. A value is
--   { type = one of 8, author = one of 1000, seq = i, amount = 0..999.99,
--     text = 70..115 bytes of words }
-- about 150 bytes in MessagePack.
local M = {}

M.TYPES = { "post", "like", "follow", "reply", "repost", "mute", "vote",
  "edit" }

local WORDS = { "flume", "log", "view", "seq", "since", "lua", "lmdb",
  "stream", "reduce", "index", "append", "event", "local", "first", "the",
  "a", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on",
  "are", "with", "as", "his", "they", "be", "at", "one", "have", "this",
  "from", "or", "had", "by", "hot", "word", "but", "what", "some", "we",
  "can", "out", "other", "were", "all", "there", "when", "up", "use",
  "your", "how", "said", "an", "each", "she", "which", "do", "their" }
assert(#WORDS == 64)

M.AUTHORS = {}
for i = 1, 1000 do M.AUTHORS[i] = "@user" .. i end

--- splitmix64's finaliser (integers wrap around in Lua 5.4); the C side
-- (bench/common.c) computes the same.
local function mix(x)
  x = x + 0x9E3779B97F4A7C15
  x = (x ~ (x >> 30)) * 0xBF58476D1CE4E5B9
  x = (x ~ (x >> 27)) * 0x94D049BB133111EB
  return x ~ (x >> 31)
end
M.mix = mix

--- The i-th seq of the random read order over a log of n values (as
-- common.c's random_seq).
function M.random_seq(i, n) return (mix(i) >> 1) % n end

local TYPES, AUTHORS, concat = M.TYPES, M.AUTHORS, table.concat

--- Value i (0-based: the value at seq i).
function M.value(i)
  local r = mix(i)
  local want = 70 + (r >> 40) % 41
  local words, len, x, k = {}, -1, mix(r), 0
  while len < want do
    k = k + 1
    if k % 10 == 0 then x = mix(x) end
    local w = WORDS[x % 64 + 1]
    x = x >> 6
    words[k] = w
    len = len + #w + 1
  end
  return {
    type = TYPES[r % 8 + 1],
    author = AUTHORS[(r >> 3) % 1000 + 1],
    seq = i,
    amount = ((r >> 13) % 100000) / 100,
    text = concat(words, " "),
  }
end

--- The values first..first+count-1, as a list.
function M.values(first, count)
  local list, value = {}, M.value
  for j = 1, count do list[j] = value(first + j - 1) end
  return list
end

return M
