-- A reduce view: how many values there are of each type, in one table.
return {
  version = 1,
  initial = {},
  reduce = function(counts, value, seq)
    local t = value.type
    counts[t] = (counts[t] or 0) + 1
    return counts
  end,
}
