// Package kitexpeer is the Go system the seed describes (Kitex, registry-etcd, Hertz), kept
// as a test peer and benchmark baseline for the Rust stack. It is never part of the product.
//
// Kitex's code is generated from the repository's own idl/ at test time, never committed:
//
//	go generate ./...   # writes kitex_gen/ with the kitex tool pinned in go.mod
package kitexpeer

//go:generate go tool kitex -module kitexpeer ../../idl/user.thrift
