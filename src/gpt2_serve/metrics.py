"""/metrics: Prometheus counters, gauges and histograms, in a registry of the app's own (two apps in one process,
as in tests, never share counts). Names follow vLLM's where one exists, under our `gpt2_serve:` prefix."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# seconds; decoding a token on CPU takes milliseconds to a second, a first token up to many seconds in a queue
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("gpt2_serve:requests", "HTTP requests by route and status",
                                ["route", "status"], registry=registry)
        self.prompt_tokens = Counter("gpt2_serve:prompt_tokens", "prompt tokens processed", registry=registry)
        self.generation_tokens = Counter("gpt2_serve:generation_tokens", "tokens generated", registry=registry)
        self.queue_depth = Gauge("gpt2_serve:num_requests_waiting", "requests waiting for a slot", registry=registry)
        self.running = Gauge("gpt2_serve:num_requests_running", "slots decoding", registry=registry)
        self.ttft = Histogram("gpt2_serve:time_to_first_token_seconds", "submit to first generated token",
                              buckets=_TTFT_BUCKETS, registry=registry)
        self.tpot = Histogram("gpt2_serve:time_per_output_token_seconds", "time between generated tokens",
                              buckets=_TPOT_BUCKETS, registry=registry)

    def watch(self, engine) -> None:
        """Read the scheduler's queue depth and running slots at each scrape (0 while the model loads)."""
        self.queue_depth.set_function(lambda: engine.scheduler.queue_depth if engine.scheduler else 0)
        self.running.set_function(lambda: engine.scheduler.running if engine.scheduler else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
