// Command etcd is a thin wrapper that builds upstream etcd from its Go module
// (go.etcd.io/etcd/server/v3), because `go install` refuses that module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
