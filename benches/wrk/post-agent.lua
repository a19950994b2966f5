-- wrk script: the Caxton Monitoring and Observability Guide's load-test request,
-- POST /api/agents with a test-agent body.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"agent_type":"test-agent","config":{"test":true}}'
wrk.path = "/api/agents"
