-- A reduce view: the total of every value's amount.
return {
  version = 1,
  initial = 0,
  reduce = function(total, value, seq) return total + value.amount end,
}
