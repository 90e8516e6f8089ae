-- An index view: values by author, in author order (then seq order).
--   db:use("authors", "views-lua/examples/by_author.lua")
--   db.authors:get("@alice")             --> { value, value, ... }
--   for author, seq, value in db.authors:read{ gte = "@a", lt = "@b" } do end
return {
  version = 1,
  -- map gives a key, a list of keys, or nil (not indexed); a composite key
  -- is a list of keys inside a list: return { { value.author, value.day } }
  map = function(value, seq) return value.author end,
}
