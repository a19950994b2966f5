-- wrk script: POST /api/messages?wait=true, a REQUEST to the agent in $AGENT_ID.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"performative":"REQUEST","sender":"wrk","receiver":"' .. (os.getenv("AGENT_ID") or "none") ..
  '","content":{"n":1},"conversation_id":"bench"}'
wrk.path = "/api/messages?wait=true"
