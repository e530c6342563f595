--[[
  Read a record, judged by Redis TIME: a record at or past its expiresAt is absent even
  in the instant before Redis deletes the key.

  KEYS[1]  the record hash, <prefix>:{<id>}

  Output
    the record packed into one string as claim-1.lua answers it
    nil  absent or expired
]]
local rcall = redis.call
local t = rcall('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local r = rcall('HMGET', KEYS[1], 's', 'f', 't', 'a', 'l', 'e', 'o', 'x')
if not r[1] or tonumber(r[6]) <= now then return false end
return string.format('%s%s,%s,%s,%s,%d,%d,%d,', r[1], r[4], r[5], r[6], r[8] or '', #r[2], #r[3], now)
  .. r[2] .. r[3] .. (r[7] or '')
