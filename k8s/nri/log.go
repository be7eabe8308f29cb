package nri

import (
	"context"
	"fmt"
	"log/slog"

	nrilog "github.com/containerd/nri/pkg/log"
)

// slogLogger passes NRI's own log lines (connection, registration) to a
// slog.Logger, so that the plugin writes one format.
type slogLogger struct{ l *slog.Logger }

// NRILogger is an NRI logger (for github.com/containerd/nri/pkg/log.Set,
// which is process-wide) that writes to l, NRI's chatter at debug level.
func NRILogger(l *slog.Logger) nrilog.Logger { return slogLogger{l.With("from", "nri")} }

func (s slogLogger) Debugf(ctx context.Context, format string, args ...any) {
	s.l.DebugContext(ctx, fmt.Sprintf(format, args...))
}
func (s slogLogger) Infof(ctx context.Context, format string, args ...any) {
	s.l.DebugContext(ctx, fmt.Sprintf(format, args...))
}
func (s slogLogger) Warnf(ctx context.Context, format string, args ...any) {
	s.l.WarnContext(ctx, fmt.Sprintf(format, args...))
}
func (s slogLogger) Errorf(ctx context.Context, format string, args ...any) {
	s.l.ErrorContext(ctx, fmt.Sprintf(format, args...))
}
