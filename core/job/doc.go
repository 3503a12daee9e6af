// Package job holds weir's domain model of a streaming job: the spec of its
// pipeline, the desired config operators change, and the status the
// controller reports. It has no AWS types and no I/O.
package job
