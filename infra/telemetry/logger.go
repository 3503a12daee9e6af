package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// NewLogger returns the structured logger weir's binaries write to
// standard error with. format is "json" (the default, for CloudWatch and
// other collectors) or "text" (for reading in a terminal); level is
// "debug", "info" (the default), "warn" or "error", in any case, with an
// optional offset such as "info+2".
func NewLogger(format, level string) (*slog.Logger, error) {
	return NewLoggerTo(os.Stderr, format, level)
}

// NewLoggerTo is NewLogger writing to w.
func NewLoggerTo(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if level = strings.TrimSpace(level); level != "" {
		if err := lvl.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("log level %q is not one of debug, info, warn or error", level)
		}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q is not json or text", format)
	}
}
