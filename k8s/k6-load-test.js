// k6-load-test.js: the seed's k6 script, kept for side-by-side runs with caxton-bench
// (`caxton-bench --plan k6` is the same plan). Target: k6 run -e TARGET=http://127.0.0.1:8080 ...
import http from 'k6/http';
import { check, sleep } from 'k6';

const TARGET = __ENV.TARGET || 'http://caxton.local:8080';

export let options = {
  stages: [
    { duration: '2m', target: 100 },  // Ramp up to 100 users
    { duration: '5m', target: 100 },  // Stay at 100 users
    { duration: '2m', target: 200 },  // Ramp up to 200 users
    { duration: '5m', target: 200 },  // Stay at 200 users
    { duration: '2m', target: 0 },    // Ramp down
  ],
  thresholds: {
    http_req_duration: ['p(95)<2000'], // 95% of requests under 2s
    http_req_failed: ['rate<0.1'],     // Error rate under 10%
  },
};

export default function() {
  // The seed passed a plain object, which k6 sends form-encoded (config becomes
  // "[object Object]"); the API takes JSON, as caxton-bench sends it.
  const response = http.post(`${TARGET}/api/agents`, JSON.stringify({
    agent_type: 'test-agent',
    config: { test: true }
  }), { headers: { 'Content-Type': 'application/json' } });

  check(response, {
    'status is 200': (r) => r.status === 200,
    'response time < 1000ms': (r) => r.timings.duration < 1000,
  });

  sleep(1);
}
