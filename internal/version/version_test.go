package version

import "testing"

func TestSemVer(t *testing.T) {
	defer func(v string) { version = v }(version)
	for v, want := range map[string]string{
		"v1.2.3": "1.2.3", "1.2.3-rc.1": "1.2.3-rc.1",
		"v0.0.0-20260301120000-abcdef123456+dirty": "0.0.0-20260301120000-abcdef123456+dirty",
		"(devel)": "0.0.0-devel", "banana": "0.0.0-devel",
	} {
		version = v
		if got := SemVer(); got != want {
			t.Errorf("SemVer() with version %q = %q, want %q", v, got, want)
		}
	}
}
