-- The benchmark's data set: value i (the one at seq i) is a pure function
-- of i, so every process, and every run, sees the same values. A value is
--   { type = one of 8, author = one of 1000, seq = i, amount = 0..999.99,
--     text = 70..115 bytes of words }
-- about 150 bytes in MessagePack. A wide value (rebuild_wide's data set) is
-- value i and fifteen fields more: twenty, about 600 bytes.
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

M.LANGS = { "en", "de", "fr", "es", "it", "pt", "nl", "sv", "ja", "zh" }
M.CLIENTS = { "flume-cli", "patchwork", "manyverse", "patchbay", "ahau",
  "planetary" }

-- Words of the text from `x` on, until there are at least `want` bytes.
local function words_of(x, want)
  local words, len, k = {}, -1, 0
  while len < want do
    k = k + 1
    if k % 10 == 0 then x = mix(x) end
    words[k] = WORDS[x % 64 + 1]
    x = x >> 6
    len = len + #words[k] + 1
  end
  return concat(words, " ")
end

local LANGS, CLIENTS, format = M.LANGS, M.CLIENTS, string.format

--- Wide value i: value i's five fields and fifteen more of every kind
-- (integers, floats, booleans, strings, a short array), about 600 bytes in
-- MessagePack; rebuild_wide's view reads two of them (author, likes).
function M.wide_value(i)
  local v = M.value(i)
  local r1, r2, r3 = mix(i + 0x1000000000), mix(i + 0x2000000000),
    mix(i + 0x3000000000)
  v.id = format("%%%016x.sha256", r1)
  v.ts = 1600000000000 + i * 1000 + r1 % 1000
  v.lang = LANGS[r1 % 10 + 1]
  v.client = CLIENTS[(r1 >> 4) % 6 + 1]
  v.likes = (r1 >> 8) % 500
  v.reposts = (r1 >> 20) % 50
  v.score = ((r1 >> 32) % 1000000) / 1000
  v.public = r2 % 4 ~= 0
  v.edited = r2 % 7 == 0
  v.reply_to = i > 0 and (r2 >> 3) % i or -1
  v.thread = format("%%%016x%016x.sha256", r2, r3)
  v.title = words_of(r2, 30 + (r2 >> 40) % 20)
  v.summary = words_of(r3, 130 + (r3 >> 40) % 60)
  v.tags = { WORDS[r3 % 64 + 1], WORDS[(r3 >> 6) % 64 + 1],
    WORDS[(r3 >> 12) % 64 + 1] }
  v.url = format("https://example.org/%s/%d/%016x", v.author:sub(2), i, r3)
  return v
end

--- The values first..first+count-1, as a list (wide ones if `wide`).
function M.values(first, count, wide)
  local list, value = {}, wide and M.wide_value or M.value
  for j = 1, count do list[j] = value(first + j - 1) end
  return list
end

return M
