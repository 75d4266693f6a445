package wire

// MaxDeliveriesPrefix starts the subjects of JetStream's max-deliveries
// advisories: $JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>.
// JetStream publishes one when it gives up on a message that was delivered
// its consumer's max_deliver times without being acknowledged.
const MaxDeliveriesPrefix = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"

// MaxDeliveriesAdvisory returns the subject prefix of the max-deliveries
// advisories of stream's consumers; append ".<consumer>" or ".*".
func MaxDeliveriesAdvisory(stream string) string { return MaxDeliveriesPrefix + "." + stream }
