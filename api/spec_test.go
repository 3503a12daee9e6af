package api

import "testing"

func TestTheDocumentIsValidOpenAPI(t *testing.T) {
	doc, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/jobs", "/jobs/{id}"} {
		if doc.Paths.Find(p) == nil {
			t.Errorf("path %s is missing", p)
		}
	}
}
