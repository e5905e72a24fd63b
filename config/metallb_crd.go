package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxMigrationSize bounds the input of MigrateMetalLB: a whole MetalLB
// install's resources, several documents.
const MaxMigrationSize = 4 * MaxDocumentSize

// Migration is MetalLB's configuration carried over to Herald.
type Migration struct {
	// Text is Herald's config.yaml, equivalent to the input where Herald can
	// say the same; Config is Text parsed.
	Text   []byte
	Config *Config
	// NotCarried lists every setting of the input Herald does not carry,
	// each "<kind>/<name>.<field>: reason", in input order.
	NotCarried []string
}

// MigrateMetalLB reads MetalLB's configuration, as custom resources of
// group metallb.io (v1beta1 and v1beta2: IPAddressPool, L2Advertisement,
// BGPAdvertisement, BGPPeer, BFDProfile, Community; one YAML stream of
// documents or Lists, as `kubectl get -o yaml` prints) and as the legacy
// ConfigMap (its "config" key, see ParseMetalLB), and writes the Herald
// configuration that says the same. Objects of other kinds are ignored.
// The result is checked as Parse checks it; an error lists its problems.
func MigrateMetalLB(stream []byte) (*Migration, error) {
	if len(stream) > MaxMigrationSize {
		return nil, fmt.Errorf("input is %d bytes; at most %d are read", len(stream), MaxMigrationSize)
	}
	objs, err := metalLBObjects(stream)
	if err != nil {
		return nil, err
	}
	m := &migrator{doc: &document{}, probs: newProblems()}
	m.collect(objs)
	m.convert()
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(m.doc); err != nil {
		return nil, err
	}
	text := buf.Bytes()
	cfg, err := Parse(text)
	mig := &Migration{Text: text, Config: cfg, NotCarried: append(m.notCarried, m.probs.warningList()...)}
	if err == nil {
		err = m.probs.err()
	}
	return mig, err
}

// metalLBObject is one Kubernetes object of the input.
type metalLBObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec  yaml.Node         `yaml:"spec"`
	Data  map[string]string `yaml:"data"`
	Items []yaml.Node       `yaml:"items"`
}

func (o metalLBObject) ref() string { return o.Kind + "/" + o.Metadata.Name }

// metalLBObjects splits the stream into objects, Lists unpacked. yaml.v3
// refuses excessive alias expansion, and the input size is bounded.
func metalLBObjects(stream []byte) ([]metalLBObject, error) {
	var out []metalLBObject
	dec := yaml.NewDecoder(bytes.NewReader(stream))
	for i := 0; ; i++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		var o metalLBObject
		if err := node.Decode(&o); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if o.Kind == "List" || strings.HasSuffix(o.Kind, "List") && len(o.Items) > 0 {
			for j, item := range o.Items {
				var obj metalLBObject
				if err := item.Decode(&obj); err != nil {
					return nil, fmt.Errorf("document %d, item %d: %w", i+1, j, err)
				}
				out = append(out, obj)
			}
			continue
		}
		out = append(out, o)
	}
}

// migrator builds a Herald document from MetalLB objects.
type migrator struct {
	doc        *document
	probs      *problems
	notCarried []string

	pools    []mlPool
	l2       []mlL2Adv
	bgpAdv   []mlBGPAdv
	peers    []mlPeer
	bfd      []mlBFD
	commVals map[string]string // Community entries by name
}

// skip records a setting Herald does not carry, and why.
func (m *migrator) skip(at, format string, args ...any) {
	m.notCarried = append(m.notCarried, at+": "+fmt.Sprintf(format, args...))
}

func (m *migrator) collect(objs []metalLBObject) {
	m.commVals = map[string]string{}
	for _, o := range objs {
		group, _, _ := strings.Cut(o.APIVersion, "/")
		if o.Kind == "ConfigMap" {
			if legacy, ok := o.Data["config"]; ok {
				m.legacy(o, legacy)
			}
			continue
		}
		if group != "metallb.io" {
			continue
		}
		var err error
		switch o.Kind {
		case "IPAddressPool":
			var s mlPool
			err = m.decodeSpec(o, &s, mlPoolFields)
			s.name, s.labels = o.Metadata.Name, o.Metadata.Labels
			m.pools = append(m.pools, s)
		case "L2Advertisement":
			var s mlL2Adv
			err = m.decodeSpec(o, &s, mlL2Fields)
			s.name = o.Metadata.Name
			m.l2 = append(m.l2, s)
		case "BGPAdvertisement":
			var s mlBGPAdv
			err = m.decodeSpec(o, &s, mlBGPAdvFields)
			s.name = o.Metadata.Name
			m.bgpAdv = append(m.bgpAdv, s)
		case "BGPPeer":
			var s mlPeer
			err = m.decodeSpec(o, &s, mlPeerFields)
			s.name = o.Metadata.Name
			m.peers = append(m.peers, s)
		case "BFDProfile":
			var s mlBFD
			err = m.decodeSpec(o, &s, mlBFDFields)
			s.name = o.Metadata.Name
			m.bfd = append(m.bfd, s)
		case "Community":
			var s mlCommunity
			err = m.decodeSpec(o, &s, []string{"communities"})
			for _, c := range s.Communities {
				m.commVals[c.Name] = c.Value
				m.doc.Communities = append(m.doc.Communities, rawCommunity{Name: c.Name, Value: c.Value})
			}
		default:
			m.skip(o.ref(), "kind %s is not carried over (Herald has no equivalent)", o.Kind)
		}
		if err != nil {
			m.probs.addf(o.ref()+".spec", "%v", err)
		}
	}
}

// decodeSpec decodes o's spec into out and records every field of the
// spec that the conversion does not know.
func (m *migrator) decodeSpec(o metalLBObject, out any, known []string) error {
	if o.Spec.Kind == 0 {
		return nil
	}
	if o.Spec.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(o.Spec.Content); i += 2 {
			if k := o.Spec.Content[i].Value; !slices.Contains(known, k) {
				m.skip(o.ref()+".spec."+k, "unknown to Herald's migration; check it by hand")
			}
		}
	}
	return o.Spec.Decode(out)
}

// legacy converts a MetalLB v0.12 ConfigMap's document with ParseMetalLB's
// conversion.
func (m *migrator) legacy(o metalLBObject, text string) {
	var ml metalLBDocument
	if !decodeDocument([]byte(text), &ml, m.probs) {
		return
	}
	d := ml.convert(m.probs)
	m.doc.Pools = append(m.doc.Pools, d.Pools...)
	m.doc.L2Advertisements = append(m.doc.L2Advertisements, d.L2Advertisements...)
	m.doc.BGPPeers = append(m.doc.BGPPeers, d.BGPPeers...)
	m.doc.BFDProfiles = append(m.doc.BFDProfiles, d.BFDProfiles...)
	m.doc.Communities = append(m.doc.Communities, d.Communities...)
	m.doc.BGPAdvertisements = append(m.doc.BGPAdvertisements, d.BGPAdvertisements...)
}
