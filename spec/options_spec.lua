-- Every option table is checked: an unknown or mistyped option is an error
-- naming it (and the option it was likely meant to be), never ignored; every
-- option a call documents is taken.
local flume = require "flume"
local H = require "spec.helpers.db"

describe("option tables", function()
  local db
  before_each(function()
    db = flume.open(nil)
    db:use("types", [[return { version = 1,
      map = function(v) return v.type, 1 end,
      reduce = function(a, n) return (a or 0) + n end }]])
    db:use("total", [[return { version = 1, initial = 0,
      reduce = function(t) return t + 1 end }]])
    db:append({ type = "post" })
  end)
  after_each(function() db:close() end)

  it("refuse an unknown option, naming it and the likely one", function()
    H.raises(function() flume.open(nil, { snyc = false }) end,
      "^flume: EINVAL: .*open has no option 'snyc' %(did you mean " ..
      "'sync'%?%); it takes codec, sync, ")
    H.raises(function() db:append({}, { bacth = true }) end,
      "append has no option 'bacth' %(did you mean 'batch'%?%)")
    H.raises(function() db:stream({ revers = true }) end,
      "stream has no option 'revers' %(did you mean 'reverse'%?%)")
    H.raises(function() db.types:get("post", { timout = 1 }) end,
      "get has no option 'timout' %(did you mean 'timeout'%?%)")
    H.raises(function() db.total:get({ wiat = false }) end,
      "get has no option 'wiat' %(did you mean 'wait'%?%)")
    H.raises(function() db.types:read({ limt = 1 }) end,
      "read has no option 'limt' %(did you mean 'limit'%?%)")
    -- no likely one: the list alone
    H.raises(function() db:stream({ colour = "red" }) end,
      "stream has no option 'colour'; it takes gt, gte, lt, lte, ")
    H.raises(function() db:stream({ [1] = true }) end,
      "stream has no option 1;")
  end)

  it("take every option they document", function()
    local tmp = H.tmpdir()
    local d = flume.open(tmp .. "/db", { codec = "msgpack", sync = false,
      map_size = 1 << 20, mapper = function(v) return v end, ready = true,
      readonly = false })
    d:append({ { a = 1 } }, { batch = true, encoded = false })
    for _ in d:stream({ gt = -1, gte = 0, lt = 5, lte = 4, reverse = false,
      limit = 3, live = false }) do end
    os.execute("mkdir " .. H.q(tmp .. "/copy"))
    d:backup(tmp .. "/copy", { compact = true, progress = function() end })
    d:close()
    assert.equal(1, db.types:get("post", { wait = true, timeout = 5 }))
    for _ in db.types:read({ gt = "a", gte = "a", lt = "z", lte = "z",
      reverse = false, limit = 5, live = false, wait = true,
      timeout = 5 }) do end
    H.rm(tmp)
  end)
end)
