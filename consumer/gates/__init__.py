"""The gates a run goes through, one module each (DESIGN §1 gates 4, 5, 7):
validation, timing (`instruments`), settle (the error boundary and the
dead-letter routing), retry with split on failure, logging correlation,
timeout; beside them the rate limiter and its HTTP client, the dead-letter
publisher and its circuit breaker. `context` holds what travels the chain.
`consumer.pipeline.chain.compose` is the one place that orders them; the
pure cores (`RetryPolicy`, `TokenBucket`, `CircuitBreaker`) take `now` as an
argument."""
