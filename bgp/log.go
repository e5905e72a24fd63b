package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// slogHandler routes GoBGP's log/slog records into zap. GoBGP's Info level
// narrates every FSM step, so Info becomes Debug except for peer state
// changes. Configured passwords are replaced in every message and attribute
// before the record reaches zap.
type slogHandler struct {
	log   *zap.Logger
	attrs []zap.Field
	group string
	sec   *secrets
}

// secrets holds the strings that must never be logged.
type secrets struct {
	mu   sync.RWMutex
	list []string
	// quietStop turns GoBGP's complaint about stopping a stopped server
	// (BgpServer.Stop after StopBgp) into Debug.
	quietStop bool
}

func (s *secrets) set(list []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = list
}

func (s *secrets) redact(v string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.list {
		if p != "" && strings.Contains(v, p) {
			v = strings.ReplaceAll(v, p, "<redacted>")
		}
	}
	return v
}

func newSlogHandler(log *zap.Logger, sec *secrets) *slogHandler {
	return &slogHandler{log: log, sec: sec}
}

func (h *slogHandler) Enabled(_ context.Context, l slog.Level) bool {
	// Info may become Debug, so ask zap about the level it will log at.
	if l < slog.LevelWarn {
		return h.log.Core().Enabled(zapcore.DebugLevel) || h.log.Core().Enabled(zapcore.InfoLevel)
	}
	return h.log.Core().Enabled(zapLevel(l))
}

func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l >= slog.LevelError:
		return zapcore.ErrorLevel
	case l >= slog.LevelWarn:
		return zapcore.WarnLevel
	case l >= slog.LevelInfo:
		return zapcore.InfoLevel
	default:
		return zapcore.DebugLevel
	}
}

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	lvl := zapLevel(r.Level)
	msg := h.sec.redact(r.Message)
	if lvl == zapcore.InfoLevel && !strings.Contains(strings.ToLower(msg), "state changed") {
		lvl = zapcore.DebugLevel
	}
	if lvl == zapcore.ErrorLevel && strings.HasPrefix(msg, "failed to stop BGP server") {
		h.sec.mu.RLock()
		quiet := h.sec.quietStop
		h.sec.mu.RUnlock()
		if quiet {
			lvl = zapcore.DebugLevel
		}
	}
	ce := h.log.Check(lvl, msg)
	if ce == nil {
		return nil
	}
	fields := make([]zap.Field, 0, len(h.attrs)+r.NumAttrs())
	fields = append(fields, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, h.field(h.group, a))
		return true
	})
	ce.Write(fields...)
	return nil
}

func (h *slogHandler) field(group string, a slog.Attr) zap.Field {
	key := a.Key
	if group != "" {
		key = group + "." + key
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return zap.String(key, h.sec.redact(v.String()))
	case slog.KindInt64:
		return zap.Int64(key, v.Int64())
	case slog.KindUint64:
		return zap.Uint64(key, v.Uint64())
	case slog.KindBool:
		return zap.Bool(key, v.Bool())
	case slog.KindDuration:
		return zap.Duration(key, v.Duration())
	case slog.KindTime:
		return zap.Time(key, v.Time())
	case slog.KindFloat64:
		return zap.Float64(key, v.Float64())
	default:
		// Groups, structs, errors: render as text so that a password inside
		// a logged configuration is redacted too.
		return zap.String(key, h.sec.redact(fmt.Sprintf("%+v", v.Any())))
	}
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]zap.Field(nil), h.attrs...)
	for _, a := range attrs {
		n.attrs = append(n.attrs, h.field(h.group, a))
	}
	return &n
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	if n.group != "" {
		n.group += "." + name
	} else {
		n.group = name
	}
	return &n
}
