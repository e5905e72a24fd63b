// Package config will parse Herald's ConfigMap text into a validated model
// (pools, L2 and BGP advertisements, peers, BFD profiles, communities),
// reporting every problem at once.
package config
