package ops

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestScrapeValue(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE a_total counter\na_total 12\n# TYPE g gauge\ng 1.5\nu 3\n")
	}))
	t.Cleanup(srv.Close)
	mfs, err := Scrape(t.Context(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"a_total": 12, "g": 1.5, "u": 3} {
		if v, ok := Value(mfs, name); !ok || v != want {
			t.Errorf("%s = %v, %v, want %v", name, v, ok, want)
		}
	}
	if _, ok := Value(mfs, "missing"); ok {
		t.Error("a missing metric has a value")
	}
	if _, err := Scrape(t.Context(), srv.URL+"/nope\x7f"); err == nil {
		t.Error("a bad URL scraped")
	}
}
