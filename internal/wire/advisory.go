package wire

// MaxDeliveriesPrefix starts the subjects of JetStream's max-deliveries
// advisories: $JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>.
// JetStream publishes one when it gives up on a message that was delivered
// its consumer's max_deliver times without being acknowledged.
const MaxDeliveriesPrefix = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"

// MaxDeliveriesAdvisory returns the subject prefix of the max-deliveries
// advisories of stream's consumers; append ".<consumer>" or ".*".
func MaxDeliveriesAdvisory(stream string) string { return MaxDeliveriesPrefix + "." + stream }

// GonePrefix starts the reply subject a worker puts on every streamed
// chunk: <GonePrefix>.<nuid>.<request id>. When nothing subscribes to the
// chunk's subject any more (its agent disconnected), NATS answers the
// publish there with a no-responders status, and the worker stops the
// generation. Agents ignore it; a worker subscribes to it.
const GonePrefix = "_HERD_GONE"
