package controller

import (
	"context"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/config"
)

// recordUpdate is what the record ConfigMap should hold: the document in
// force and the one Services last had everything granted under.
type recordUpdate struct {
	latest, accepted string
}

func recordOf(cm *corev1.ConfigMap) (recordUpdate, bool) {
	if cm == nil {
		return recordUpdate{}, false
	}
	return recordUpdate{latest: cm.Data[config.RecordLatest], accepted: cm.Data[config.RecordAccepted]}, true
}

// recordWantLocked is the record the configuration in force calls for, or
// nil when the record says so already (or nothing valid is in force).
func (c *Controller) recordWantLocked(record *corev1.ConfigMap) *recordUpdate {
	if c.inForce.Config == nil {
		return nil
	}
	want := recordUpdate{latest: c.inForce.Text, accepted: c.inForce.Text}
	if len(c.held) > 0 {
		want.accepted = c.inForce.AcceptedText
	}
	if have, ok := recordOf(record); ok && have == want {
		return nil
	}
	return &want
}

// writeRecord stores the record in the API, where it survives restarts of
// every Herald process; on failure it tries again a little later.
func (c *Controller) writeRecord(want recordUpdate) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name := config.RecordName(c.opts.ConfigName)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.opts.Namespace, Annotations: map[string]string{
			"herald.dev/about": "written by herald-controller: the last valid configuration, kept in force while " + c.opts.ConfigName + " is invalid. Do not edit.",
		}},
		Data: map[string]string{config.RecordLatest: want.latest, config.RecordAccepted: want.accepted},
	}
	cms := c.kube.CoreV1().ConfigMaps(c.opts.Namespace)
	_, err := cms.Update(ctx, cm, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	}
	if err != nil {
		c.log.Warn("configuration record not written; trying again", zap.String("configmap", name), zap.Error(err))
		time.AfterFunc(2*time.Second, c.configChanged)
	}
}
