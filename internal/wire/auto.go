package wire

// ModelAuto is the model name that asks herd to choose the model: the
// dispatcher matches the agent against the agent profiles
// (dispatcher.auto) and runs the request on the profile's model, or on a
// fallback when that model is busy or its breaker is open.
const ModelAuto = "auto"

// HdrModel is the reply header that names the model that answered: the
// one chosen for a "model": "auto" request, or the fallback a request was
// routed to while its model's breaker was open.
const HdrModel = "Herd-Model"

// AutoEventSubject returns the subject a profile's changes of model are
// announced on: herd.events.auto.<profile>.
func AutoEventSubject(profile string) string { return EventsPrefix + ".auto." + EncodeModel(profile) }

// ReportsPrefix starts the subjects of the optimizer's one-shot reports
// (stream HERD_REPORTS): herd.reports.<kind>.
const ReportsPrefix = "herd.reports"

// StreamReports is the stream of the optimizer's one-shot reports.
const StreamReports = "HERD_REPORTS"

// ReportSubject returns the subject a report of kind (performance, batch,
// context, benchmark, decisions or all) is stored on.
func ReportSubject(kind string) string { return ReportsPrefix + "." + kind }
