package wire

import "testing"

func TestModelEncodingRoundTrip(t *testing.T) {
	for _, m := range []string{"tinyllama", "llama3.2:3b", "deepseek-r1:8b", "hf.co/a/b:Q4_K_M", "a*b>c%d e", "herd-tiny"} {
		enc := EncodeModel(m)
		for _, c := range []byte{'.', '*', '>', ' '} {
			for i := 0; i < len(enc); i++ {
				if enc[i] == c {
					t.Fatalf("EncodeModel(%q) = %q holds %q", m, enc, c)
				}
			}
		}
		dec, err := DecodeModel(enc)
		if err != nil || dec != m {
			t.Fatalf("DecodeModel(%q) = %q, %v; want %q", enc, dec, err, m)
		}
	}
	if got := EncodeModel("llama3.2:3b"); got != "llama3%2E2:3b" {
		t.Fatalf("EncodeModel = %q", got)
	}
	for _, bad := range []string{"a%", "a%2", "a%ZZ"} {
		if _, err := DecodeModel(bad); err == nil {
			t.Fatalf("DecodeModel(%q) accepted a bad escape", bad)
		}
	}
}

func TestParseDoor(t *testing.T) {
	tests := []struct {
		subject string
		p       Priority
		agent   string
		ok      bool
	}{
		{"herd.req.high.a1", High, "a1", true},
		{"herd.ask.low.agent-7", Low, "agent-7", true},
		{"herd.req.urgent.a1", "", "", false},
		{"herd.req.high", "", "", false},
		{"herd.req.high.a.b", "", "", false},
		{"herd.batch.high.a", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			p, a, err := ParseDoor(tt.subject)
			if (err == nil) != tt.ok || p != tt.p || a != tt.agent {
				t.Fatalf("ParseDoor(%q) = %q, %q, %v", tt.subject, p, a, err)
			}
		})
	}
}

func TestConsumerNameDistinct(t *testing.T) {
	a, b := ConsumerName("llama3.2:3b", High), ConsumerName("llama3_2:3b", High)
	if a == b {
		t.Fatalf("distinct models share consumer name %q", a)
	}
}
