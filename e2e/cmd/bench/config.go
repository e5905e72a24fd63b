package main

import (
	"context"
	"fmt"

	"github.com/heraldlb/herald/config/configtest"
)

// benchConfig parses each pathological configuration document (each near
// 1 MiB; see config/configtest) and prints the slowest parse and the most
// heap one allocated. It needs no lab. The limits are 100 ms and 64 MiB;
// BenchmarkParseWorst fails past them.
func benchConfig(context.Context) error {
	w := configtest.Worst(configtest.MeasureAll(3))
	fmt.Printf("config_worst_parse_ms=%.1f\n", configtest.Millis(w.Time))
	fmt.Printf("config_worst_parse_mib=%.1f\n", configtest.MiB(w.Bytes))
	return nil
}
