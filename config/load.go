package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// The user's ConfigMap holds the configuration under Key; the controller
// keeps a record of it in another ConfigMap (RecordName) so that the last
// valid configuration survives restarts while the user's is invalid.
const (
	// Key is the key of the user's ConfigMap that holds the document.
	Key = "config.yaml"
	// ConfirmAnnotation on the user's ConfigMap confirms a held change: its
	// value is the Hash of the document whose effects the user accepts.
	ConfirmAnnotation = "herald.dev/confirm"
	// RecordLatest is the record's key for the last valid document seen.
	RecordLatest = "latest.yaml"
	// RecordAccepted is the record's key for the last document accepted
	// whole: the one whose addresses and announcements Services keep while
	// a newer document that would take them away waits for confirmation.
	RecordAccepted = "accepted.yaml"
)

// RecordName is the name of the record ConfigMap for the user's ConfigMap name.
func RecordName(configName string) string { return configName + "-record" }

// Hash names a document: the first 16 hex digits of its SHA-256. Users
// confirm a held change by quoting it.
func Hash(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:8])
}

// State is the configuration Herald runs on, as Load reads it from the
// user's ConfigMap and the record.
type State struct {
	// Config is in force: the user's document when valid, else the last
	// valid one (the record's, or one this process loaded before). Nil when
	// there has never been a valid one.
	Config *Config
	Text   string // Config's document
	Hash   string // Hash(Text)
	// Err says why the user's document is not in force (missing, empty,
	// invalid); nil when it is.
	Err error
	// Accepted, when not nil, is the configuration Services were last given
	// their addresses and announcements under, which Config changes and the
	// user has not confirmed: whatever Config would take away from a Service
	// or stop announcing, the Service keeps under Accepted until then.
	Accepted     *Config
	AcceptedText string
}

// Confirmed reports whether the user's ConfigMap confirms the document in force.
func (s State) Confirmed(user *corev1.ConfigMap) bool {
	return user != nil && s.Config != nil && user.Annotations[ConfirmAnnotation] == s.Hash
}

// Loader reads Herald's configuration the one way the controller and every
// speaker share. It remembers parsed documents, so loading an unchanged
// ConfigMap again costs a comparison; it is not safe for concurrent use.
type Loader struct {
	parsed map[string]parsed // by document text: what the last Load used
	last   State             // the last Load with a valid Config
}

type parsed struct {
	cfg *Config
	err error
}

// Load reads the configuration in force from the user's ConfigMap and the
// controller's record of it (either may be nil: not found). The rules:
//   - a valid user document is in force;
//   - a missing ConfigMap or key, an empty document or an invalid one is
//     never in force: the record's last valid document is, or failing
//     that the last one this Loader had in force, or none;
//   - the record's accepted document, when it differs from the one in force
//     and the user has not confirmed the latter, is returned as Accepted.
func (l *Loader) Load(user, record *corev1.ConfigMap) State {
	used := map[string]parsed{}
	parse := func(text string) (*Config, error) {
		p, ok := l.parsed[text]
		if !ok {
			p.cfg, p.err = Parse([]byte(text))
		}
		used[text] = p
		return p.cfg, p.err
	}
	defer func() { l.parsed = used }()

	var st State
	text, err := userDocument(user)
	if err == nil {
		var cfg *Config
		if cfg, err = parse(text); err == nil {
			st.Config, st.Text = cfg, text
		}
	}
	st.Err = err
	if st.Config == nil {
		if latest, ok := recordDocument(record, RecordLatest); ok {
			if cfg, perr := parse(latest); perr == nil {
				st.Config, st.Text = cfg, latest
			}
		}
	}
	if st.Config == nil && l.last.Config != nil {
		st.Config, st.Text = l.last.Config, l.last.Text
	}
	if st.Config == nil {
		return st
	}
	st.Hash = Hash(st.Text)
	if accepted, ok := recordDocument(record, RecordAccepted); ok && accepted != st.Text && !st.Confirmed(user) {
		if cfg, perr := parse(accepted); perr == nil {
			st.Accepted, st.AcceptedText = cfg, accepted
		}
	}
	l.last = st
	return st
}

// userDocument is the document of the user's ConfigMap, or why there is none.
func userDocument(user *corev1.ConfigMap) (string, error) {
	if user == nil {
		return "", errors.New("the ConfigMap does not exist")
	}
	text, ok := user.Data[Key]
	if !ok {
		return "", fmt.Errorf("the ConfigMap has no key %s", Key)
	}
	return text, nil // Parse refuses an empty document
}

func recordDocument(record *corev1.ConfigMap, key string) (string, bool) {
	if record == nil {
		return "", false
	}
	text, ok := record.Data[key]
	return text, ok
}
