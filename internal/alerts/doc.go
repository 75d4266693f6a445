// Package alerts renders herd's Prometheus alert rules
// (deploy/prometheus/alerts.yml) from the configuration: the latency and
// error-rate rules from the service-level targets (internal/slo), the
// others (queues, Ollama errors, breakers, dead letters, services down) as
// they are. `herd alerts` writes them; a test checks that the shipped file
// equals what the default configuration renders.
package alerts
