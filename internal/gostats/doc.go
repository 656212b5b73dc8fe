// Package gostats writes the Go runtime readings that the density tuning
// needs and that the process metrics of VictoriaMetrics/metrics lack: the
// live heap at the last collection and the collector's GOGC target, in
// Prometheus text format.
package gostats
