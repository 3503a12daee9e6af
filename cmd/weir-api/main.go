// Command weir-api serves the config API (api/openapi.yaml) over plain HTTP
// on a local address: the same http.Handler the Lambda function serves
// behind API Gateway. With -memory it keeps jobs in memory and TTL timers
// nowhere (for contract tests such as `make api-fuzz`); otherwise it uses
// the stack named by the WEIR_* variables, on the endpoint the AWS SDK is
// pointed at (the emulator, LocalStack or AWS).
//
//	eval "$(weir-resources create --stack weir-local)"
//	weir-api -addr 127.0.0.1:8080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store/memstore"
	"github.com/weirstream/weir/functions/configapi/httpapi"
	"github.com/weirstream/weir/functions/jobs"
	"github.com/weirstream/weir/functions/wiring"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	memory := flag.Bool("memory", false, "keep jobs in memory and TTL timers nowhere, instead of the stack's table and schedule group")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *memory, log); err != nil {
		log.Error("weir-api stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, memory bool, log *slog.Logger) error {
	svc, err := service(ctx, memory, log)
	if err != nil {
		return err
	}
	h, err := httpapi.New(svc, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Info("config API listening", "url", "http://"+ln.Addr().String(), "memory", memory)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func service(ctx context.Context, memory bool, log *slog.Logger) (*jobs.Service, error) {
	if memory {
		return jobs.New(jobs.Deps{Store: memstore.New(), Timers: noTimers{}, Log: log})
	}
	svc, _, err := wiring.Service(ctx, wiring.LocalEnv(os.Getenv), log)
	return svc, err
}

// noTimers drops TTL timers: -memory has no scheduler to keep them.
type noTimers struct{}

func (noTimers) Set(context.Context, job.ID, time.Time) error { return nil }
func (noTimers) Clear(context.Context, job.ID) error          { return nil }
