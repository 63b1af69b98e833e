"""Renderers: human summary, markdown, Kubernetes manifests, tfvars."""
