-- A group view: how many values each author wrote.
return {
  version = 1,
  map = function(value, seq) return value.author, 1 end,
  reduce = function(n, one, author, seq) return (n or 0) + one end,
}
