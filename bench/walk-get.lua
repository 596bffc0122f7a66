-- wrk script that sends GET with each key of KEYS_FILE as a bearer token
-- once, in order, then stops: it warms a gateway's cache. Run with -t1.
local keys = {}
for line in io.lines(os.getenv("KEYS_FILE") or "keys.txt") do keys[#keys + 1] = line end
local sent, answered = 0, 0
request = function()
  sent = sent % #keys + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. keys[sent] }, nil)
end
response = function(status)
  answered = answered + 1
  if answered >= #keys then wrk.thread:stop() end
end
