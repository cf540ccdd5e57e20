// Command kube-apiserver is the project's test fixture: the real Kubernetes
// API server, built from the k8s.io/kubernetes module pinned in go.mod, so
// that vip's Kubernetes-facing code is tested against the server users run.
// vip-testkit's apiserver fixture builds and starts it; it is never shipped.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
