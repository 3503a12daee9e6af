package external_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/infra/launcher/external"
)

func TestExternalLaunchesNothingAndSaysWhatItExpects(t *testing.T) {
	var out bytes.Buffer
	l := external.New(slog.New(slog.NewJSONHandler(&out, nil)))
	ctx := context.Background()
	req := fleet.Request{JobID: "clicks", RunID: 2, Workers: []string{"w-0", "w-1"}, SlotsPerWorker: 1, Program: "p"}
	if err := l.Start(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := l.Stop(ctx, "clicks", 2); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"job":"clicks"`, `"run_id":2`, `"workers":["w-0","w-1"]`, `"up_to_run":2`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, out.String())
		}
	}
	if err := l.Start(ctx, fleet.Request{JobID: "clicks", RunID: 1}); err == nil {
		t.Error("Start of a request with no workers succeeded")
	}
	if err := l.Stop(ctx, "clicks", -1); err == nil {
		t.Error("Stop with a negative run succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Start(cancelled, req); err == nil {
		t.Error("Start on a cancelled context succeeded")
	}
}
