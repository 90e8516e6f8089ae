-- A TCP echo server and a client sending 50 lines to it, on 127.0.0.1,
-- for the luv specs (luv_spec.lua and its child, luv_child.lua): the other
-- handles a luv program has beside flume. echo(uv) starts both; the table
-- it returns says whether every line came back and closes both.
return function(uv)
  local server = uv.new_tcp()
  assert(server:bind("127.0.0.1", 0))
  local port = server:getsockname().port
  server:listen(16, function(err)
    assert(not err, err)
    local conn = uv.new_tcp()
    server:accept(conn)
    conn:read_start(function(e, data)
      assert(not e, e)
      if data then conn:write(data) else conn:close() end
    end)
  end)
  local client, sent = uv.new_tcp(), {}
  local e = { echoed = "" }
  client:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    client:read_start(function(rerr, data)
      assert(not rerr, rerr)
      if data then e.echoed = e.echoed .. data end
    end)
    for i = 1, 50 do
      sent[i] = "line " .. i .. "\n"
      client:write(sent[i])
    end
  end)
  e.sent = function() return table.concat(sent) end
  e.done = function() return #sent == 50 and e.echoed == e.sent() end
  e.close = function()
    client:close()
    server:close()
  end
  return e
end
