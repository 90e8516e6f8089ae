-- A reduce view: the total of the `amount` field over the whole log, and
-- how many values had one.
--   db:use("total", "views-lua/examples/total_amount.lua")
--   db.total:get()                       --> { sum = 1234.5, count = 10 }
return {
  version = 1,
  -- the state before the first value; each rebuild starts from a fresh copy
  initial = { sum = 0, count = 0 },
  -- map is optional in a reduce view: it picks what reduce sees (nil skips)
  map = function(value, seq) return value.amount end,
  reduce = function(total, amount, seq)
    total.sum = total.sum + amount
    total.count = total.count + 1
    return total
  end,
  -- an extra method, since-gated: db.total:average()
  methods = {
    average = { "async", function(total)
      return total.count > 0 and total.sum / total.count or 0
    end },
  },
}
