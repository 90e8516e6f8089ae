-- A group view over the wide values (data.wide_value: twenty fields): the
-- likes of each author's values, summed. It reads two fields of twenty.
return {
  version = 1,
  map = function(value, seq) return value.author, value.likes end,
  reduce = function(sum, likes, author, seq) return (sum or 0) + likes end,
}
