// Package logging builds the hclog loggers that every Tandem component uses and
// adapts them to the interfaces of the libraries we embed (go-grpc-middleware).
//
// Every component takes an hclog.Logger and calls Named() on it, so a log line
// names its source ("tandem-broker.wal", "tandem-sidecar.replication"). The
// JSON format is for production log pipelines; the text format is for people.
package logging

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/hashicorp/go-hclog"
)

// Options choose how a process logs.
type Options struct {
	Name   string    // root logger name, e.g. "tandem-broker"
	Level  string    // trace, debug, info (default), warn, error
	JSON   bool      // one JSON object per line instead of text
	Output io.Writer // defaults to stderr
}

// New returns the root logger of a process.
func New(o Options) hclog.Logger {
	out := o.Output
	if out == nil {
		out = os.Stderr
	}
	lvl := hclog.LevelFromString(o.Level)
	if lvl == hclog.NoLevel {
		lvl = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:            o.Name,
		Level:           lvl,
		JSONFormat:      o.JSON,
		Output:          out,
		IncludeLocation: false,
		TimeFormat:      "2006-01-02T15:04:05.000Z0700",
	})
}

// GRPC adapts an hclog.Logger to go-grpc-middleware's logging.Logger, so the
// logging interceptor writes its call lines through the component's logger.
func GRPC(l hclog.Logger) logging.Logger {
	return logging.LoggerFunc(func(_ context.Context, lvl logging.Level, msg string, fields ...any) {
		switch lvl {
		case logging.LevelDebug:
			l.Debug(msg, fields...)
		case logging.LevelInfo:
			l.Info(msg, fields...)
		case logging.LevelWarn:
			l.Warn(msg, fields...)
		case logging.LevelError:
			l.Error(msg, fields...)
		default:
			l.Info(fmt.Sprintf("%s (level %v)", msg, lvl), fields...)
		}
	})
}
