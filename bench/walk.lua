-- wrk script that verifies every key of KEYS_FILE once, in order, then
-- stops: it fills the server's cache with exactly those keys. Run with -t1.
--   KEYS_FILE=keys.txt AUTH=TOKEN wrk -t1 -c64 -d300s -s walk.lua http://HOST/v1/keys/verify
local keys = {}
for line in io.lines(os.getenv("KEYS_FILE") or "keys.txt") do keys[#keys + 1] = line end
local auth = os.getenv("AUTH")
local sent, answered = 0, 0
request = function()
  sent = sent % #keys + 1
  local headers = { ["Content-Type"] = "application/json" }
  if auth then headers["Authorization"] = "Bearer " .. auth end
  return wrk.format("POST", nil, headers, '{"key":"' .. keys[sent] .. '"}')
end
response = function(status)
  answered = answered + 1
  if answered >= #keys then wrk.thread:stop() end
end
