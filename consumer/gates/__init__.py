"""The gates around the handler (DESIGN §1 gates 4, 5, 7): middleware chain,
adaptive rate limiter, retry with backoff, dead-letter topic and its circuit
breaker. `consumer.pipeline` composes them; each module here is one gate with
a narrow interface, and the pure cores (`RetryPolicy`, `TokenBucket`,
`CircuitBreaker`) take `now` as an argument."""
