// Package cmd holds Herald's binaries (herald-controller, herald-speaker,
// heraldctl) as subdirectories; each only parses flags and starts the pieces.
package cmd
