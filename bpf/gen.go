// Package bpf holds Latch's eBPF programs (latch.c) and the Go bindings
// bpf2go generates from them (latch_bpfel.go, latch_bpfel.o, committed so
// that building needs no clang). Only package node/enforce/ebpf imports it;
// it loads the collection, fills the maps and attaches the programs.
//
// Regenerate with `make generate` (installs clang, llvm, libbpf-dev,
// gcc-multilib and bpftool when missing); `make generate-check` fails when
// the committed output differs from a fresh build.
package bpf

//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type settings -type ident_key -type workload -type rule_key -type cidr_key -type port_range -type ports -type ct_key -type ct_val -type cgroup_workload -type event -type reason -type dir -type verdict -type stat -type host -output-stem latch Latch latch.c -- -I/usr/include/x86_64-linux-gnu
