-- A group view: how many values of each type.
--   db:use("types", "views-lua/examples/count_by_type.lua")
--   db.types:get("post")                 --> 42
--   for type, n in db.types:read() do print(type, n) end
return {
  version = 1,
  -- map gives the key to group under and the value to reduce into it;
  -- returning nil skips the value
  map = function(value, seq) return value.type, 1 end,
  -- reduce folds a value into the key's accumulator (nil the first time)
  reduce = function(acc, n, key, seq) return (acc or 0) + n end,
}
