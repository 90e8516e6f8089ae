-- An index view: values by author, in author order then seq order.
return {
  version = 1,
  map = function(value, seq) return value.author end,
}
