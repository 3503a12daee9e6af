package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestIsAWSEndpoint(t *testing.T) {
	cases := map[string]string{
		"https://abc123.execute-api.eu-west-1.amazonaws.com":          "eu-west-1",
		"https://abc123.execute-api.us-east-1.amazonaws.com/prod":     "us-east-1",
		"https://abc123.execute-api.cn-north-1.amazonaws.com.cn":      "cn-north-1",
		"http://127.0.0.1:8080":                                       "",
		"https://api.example.com":                                     "",
		"https://execute-api.eu-west-1.amazonaws.com.evil.example":    "",
		"https://abc123.execute-api.eu-west-1.amazonaws.com.evil.com": "",
	}
	for u, want := range cases {
		got, ok := IsAWSEndpoint(u)
		if got != want || ok != (want != "") {
			t.Errorf("IsAWSEndpoint(%q) = %q, %v; want %q", u, got, ok, want)
		}
	}
}

func TestParseBaseURL(t *testing.T) {
	for raw, want := range map[string]string{
		"":                         "no API URL",
		"127.0.0.1:8080":           "not an http:// or https:// URL",
		"http://":                  "not an http:// or https:// URL",
		"http://x:1/jobs?limit=1":  "has a query",
		"http://127.0.0.1:8080/":   "",
		"https://h.example/stage/": "",
	} {
		_, err := ParseBaseURL(raw)
		if (err == nil) != (want == "") || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("ParseBaseURL(%q) = %v, want %q", raw, err, want)
		}
	}
}

func TestPatchClearsTTLWithNull(t *testing.T) {
	ttl := "1h0m0s"
	for _, c := range []struct {
		p    Patch
		want string
	}{
		{Patch{TTL: &ttl}, `{"ttl":"1h0m0s"}`},
		{Patch{ClearTTL: true}, `{"ttl":null}`},
		{Patch{Parallelism: map[string]int{"map": 2}}, `{"parallelism":{"map":2}}`},
	} {
		b, err := json.Marshal(c.p)
		if err != nil || string(b) != c.want {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", c.p, b, err, c.want)
		}
	}
}

func TestErrorsOfOtherServers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stage/jobs/forbidden":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(403)
			_, _ = w.Write([]byte(`{"message":"Forbidden"}`))
		default:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			_, _ = w.Write([]byte("<html>Bad Gateway</html>"))
		}
	}))
	defer srv.Close()
	c, err := New(Options{BaseURL: srv.URL + "/stage/"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Get(context.Background(), "forbidden")
	if !IsStatus(err, 403) || err.Error() != "Forbidden (403): Forbidden" {
		t.Errorf("403 from API Gateway: %v", err)
	}
	var e *APIError
	_, _, err = c.Get(context.Background(), "x")
	if !IsStatus(err, 502) || !strings.Contains(err.Error(), "Bad Gateway") {
		t.Errorf("502: %v", err)
	}
	if e, _ = err.(*APIError); e == nil || e.Refused() {
		t.Errorf("a 502 counts as a refusal: %v", err)
	}
}

func TestSigningNeedsCredentials(t *testing.T) {
	_, err := New(Options{BaseURL: "https://abc.execute-api.eu-west-1.amazonaws.com"})
	if err == nil || !strings.Contains(err.Error(), "no AWS credentials") {
		t.Errorf("New without credentials: %v", err)
	}
	c, err := New(Options{BaseURL: "http://127.0.0.1:1", Signing: SignNever})
	if err != nil || c.Signs() {
		t.Errorf("local: %v, signs %v", err, c != nil && c.Signs())
	}
}
