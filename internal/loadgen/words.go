package loadgen

// vocabulary is the words synthetic prompts are made of: the kind of words
// agents' task prompts hold.
var vocabulary = []string{
	"analyze", "the", "report", "and", "summarize", "key", "findings", "for", "customer", "order",
	"invoice", "status", "update", "check", "whether", "service", "latency", "error", "rate", "increased",
	"after", "deploy", "list", "three", "risks", "in", "this", "plan", "extract", "names",
	"dates", "amounts", "from", "email", "below", "classify", "ticket", "as", "bug", "feature",
	"question", "translate", "text", "into", "French", "German", "Spanish", "write", "short", "reply",
	"to", "user", "explain", "why", "test", "failed", "suggest", "fix", "code", "function",
	"returns", "wrong", "value", "when", "input", "is", "empty", "compare", "two", "options",
	"cost", "benefit", "schedule", "meeting", "next", "week", "with", "team", "review", "pull",
	"request", "describe", "changes", "database", "query", "slow", "index", "missing", "table", "column",
	"forecast", "demand", "region", "quarter", "budget", "sales", "growth", "trend", "metric", "dashboard",
	"alert", "threshold", "incident", "timeline", "root", "cause", "mitigation", "action", "items", "owner",
	"document", "section", "policy", "compliance", "contract", "clause", "term", "renewal", "price", "discount",
	"product", "catalog", "category", "tag", "search", "results", "rank", "relevant", "answer", "context",
	"memory", "agent", "tool", "call", "step", "goal", "constraint", "assumption", "evidence", "conclusion",
	"draft", "outline", "paragraph", "title", "headline", "tone", "formal", "friendly", "concise", "detailed",
	"JSON", "field", "schema", "validate", "format", "parse", "log", "line", "timestamp", "host",
	"cluster", "node", "memory", "CPU", "disk", "network", "packet", "loss", "retry", "timeout",
	"queue", "backlog", "worker", "job", "batch", "stream", "event", "message", "topic", "partition",
	"user", "account", "login", "password", "reset", "permission", "role", "access", "denied", "granted",
	"image", "caption", "describe", "scene", "object", "color", "count", "people", "vehicle", "street",
	"recipe", "ingredient", "calorie", "portion", "travel", "flight", "hotel", "booking", "itinerary", "city",
	"weather", "temperature", "rain", "wind", "forecast", "map", "route", "distance", "minutes", "hours",
	"about", "each", "every", "most", "least", "more", "less", "than", "then", "also",
	"please", "only", "not", "all", "any", "new", "old", "first", "last", "best",
}
