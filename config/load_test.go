package config_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/config"
)

const (
	docA    = "pools:\n- name: a\n  addresses: [198.51.100.10/32]\n"
	docB    = "pools:\n- name: b\n  addresses: [198.51.100.20/32]\n"
	docBad  = "pools:\n- name: A\n"
	docNone = "# nothing here\n"
)

func userCM(text string, confirm string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "herald"}, Data: map[string]string{config.Key: text}}
	if confirm != "" {
		cm.Annotations = map[string]string{config.ConfirmAnnotation: confirm}
	}
	return cm
}

func recordCM(latest, accepted string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: config.RecordName("herald")},
		Data: map[string]string{config.RecordLatest: latest, config.RecordAccepted: accepted}}
}

func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name         string
		user, record *corev1.ConfigMap
		wantText     string // "" : nothing in force
		wantErr      bool
		wantAccepted string
	}{
		{name: "fresh install, valid", user: userCM(docA, ""), wantText: docA},
		{name: "fresh install, invalid: nothing", user: userCM(docBad, ""), wantErr: true},
		{name: "fresh install, no ConfigMap", wantErr: true},
		{name: "valid and accepted", user: userCM(docA, ""), record: recordCM(docA, docA), wantText: docA},
		{name: "invalid: the record's latest", user: userCM(docBad, ""), record: recordCM(docB, docA), wantText: docB, wantErr: true, wantAccepted: docA},
		{name: "empty document: the record's latest", user: userCM(docNone, ""), record: recordCM(docA, docA), wantText: docA, wantErr: true},
		{name: "blank document: the record's latest", user: userCM("  \n", ""), record: recordCM(docA, docA), wantText: docA, wantErr: true},
		{name: "no key: the record's latest", user: &corev1.ConfigMap{}, record: recordCM(docA, docA), wantText: docA, wantErr: true},
		{name: "no ConfigMap: the record's latest", record: recordCM(docA, docA), wantText: docA, wantErr: true},
		{name: "new document, not confirmed", user: userCM(docB, ""), record: recordCM(docA, docA), wantText: docB, wantAccepted: docA},
		{name: "new document, confirmed", user: userCM(docB, config.Hash(docB)), record: recordCM(docB, docA), wantText: docB},
		{name: "confirmation of another document", user: userCM(docB, config.Hash(docA)), record: recordCM(docA, docA), wantText: docB, wantAccepted: docA},
		{name: "invalid record is ignored", user: userCM(docBad, ""), record: recordCM(docBad, docBad), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l config.Loader
			st := l.Load(tc.user, tc.record)
			if got := st.Text; got != tc.wantText {
				t.Errorf("in force %q, want %q", got, tc.wantText)
			}
			if (st.Config != nil) != (tc.wantText != "") {
				t.Errorf("Config %v with text %q", st.Config, st.Text)
			}
			if (st.Err != nil) != tc.wantErr {
				t.Errorf("Err = %v, want an error: %v", st.Err, tc.wantErr)
			}
			if st.AcceptedText != tc.wantAccepted || (st.Accepted != nil) != (tc.wantAccepted != "") {
				t.Errorf("accepted %q, want %q", st.AcceptedText, tc.wantAccepted)
			}
			if st.Config != nil && st.Hash != config.Hash(st.Text) {
				t.Errorf("Hash %s is not the hash of the text in force", st.Hash)
			}
		})
	}
}

// A process that had a valid document keeps it when the ConfigMap turns
// invalid and no record exists (the controller has not written one yet).
func TestLoadKeepsWhatItHad(t *testing.T) {
	var l config.Loader
	if st := l.Load(userCM(docA, ""), nil); st.Text != docA {
		t.Fatalf("first load: %q", st.Text)
	}
	st := l.Load(userCM(docBad, ""), nil)
	if st.Text != docA || st.Err == nil {
		t.Errorf("after an invalid edit: in force %q, err %v; want %q and an error", st.Text, st.Err, docA)
	}
	st = l.Load(nil, nil)
	if st.Text != docA || st.Err == nil {
		t.Errorf("after the ConfigMap is deleted: in force %q, err %v; want %q and an error", st.Text, st.Err, docA)
	}
}

func TestHashIsStable(t *testing.T) {
	if h := config.Hash(docA); h != config.Hash(docA) || len(h) != 16 || h == config.Hash(docB) {
		t.Errorf("Hash: %q", h)
	}
}
