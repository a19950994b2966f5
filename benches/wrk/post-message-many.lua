-- wrk script: POST /api/messages?wait=true round-robin over the agents in $AGENT_IDS
-- (comma-separated), so no single agent's mailbox (serial by design) is the bottleneck.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local ids = {}
for id in string.gmatch(os.getenv("AGENT_IDS") or "none", "[^,]+") do ids[#ids + 1] = id end
local i = 0
request = function()
  i = i + 1
  local body = '{"performative":"REQUEST","sender":"wrk","receiver":"' .. ids[(i % #ids) + 1] ..
    '","content":{"n":1},"conversation_id":"bench"}'
  return wrk.format(nil, "/api/messages?wait=true", nil, body)
end
