// Package cluster tests herd on a NATS cluster: three real nats-server
// processes with R3 streams and buckets, two dispatchers and two workers
// (the built binaries) attached to different servers, and agents using the
// Go SDK. The HERD_REQ stream leader is killed under load, then a whole
// node, and a ledger checks that every request JetStream acknowledged gets
// exactly one final outcome. docs/operations.md describes the deployment
// this test runs.
package cluster
