package main

import "github.com/spf13/cobra"

// newK8sCmd groups the Kubernetes node components.
func newK8sCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "k8s",
		Short: "Kubernetes node components that give pods BPF rights",
	}
	cmd.AddCommand(newK8sNRICmd(g))
	return cmd
}
